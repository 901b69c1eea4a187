"""Shared fixtures: paths to the read-only data in ../shared/data and small objects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HF_MUSIC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MAESTRO_MINI = SHARED_DATA / "maestro-mini"
MAESTRO_METADATA = SHARED_DATA / "maestro-v3.0.0-metadata"
POP909 = SHARED_DATA / "pop909-sample"
BAD_MIDI = SHARED_DATA / "bad-midi"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import pretty_midi_reference


def pytest_configure(config):
    # The fixtures are part of the test contract: fail loudly instead of skipping silently.
    if not MAESTRO_MINI.is_dir():
        raise pytest.UsageError(f"shared test data not found at {SHARED_DATA} (set HF_MUSIC_SHARED_DATA)")


@pytest.fixture(scope="session")
def maestro_files() -> list[Path]:
    files = sorted(MAESTRO_MINI.glob("*/*.midi"))
    assert len(files) == 52
    return files


@pytest.fixture(scope="session")
def bad_midi_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BAD_MIDI.iterdir())}


@pytest.fixture(scope="session")
def tokenizer():
    from hf_music import MidiTokenizer

    return MidiTokenizer()


LOAD_WITHOUT_HF_MUSIC = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockHfMusic(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "hf_music" or name.startswith("hf_music."):
                raise ImportError("hf_music is blocked in this process")

    sys.meta_path.insert(0, BlockHfMusic())
    try:
        import hf_music  # noqa: F401
        raise SystemExit("hf_music was importable")
    except ImportError:
        pass

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, out = sys.argv[1], sys.argv[2]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, use_safetensors=True)
    torch.manual_seed(0)
    ids = model.generate(torch.tensor([[tokenizer.bos_token_id]]), max_new_tokens=64)
    tokenizer.write_midi(ids[0], out)
    print(type(config).__module__, type(model).__name__, type(tokenizer).__name__, len(ids[0]))
    """
)


@pytest.fixture(scope="session")
def default_model():
    """The embedded default model (3.8M parameters, context 2,048)."""
    from hf_music import load_default_model

    return load_default_model()[0]


@pytest.fixture(scope="session")
def short_model():
    """A 64-position model: pieces of a few hundred tokens re-prime several times."""
    import torch

    from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM

    torch.manual_seed(0)
    config = MusicTransformerConfig.from_preset("tiny", n_positions=64, initializer_range=0.2)
    return MusicTransformerForCausalLM(config).eval()


@pytest.fixture(scope="session")
def excerpts(maestro_files, tokenizer):
    """Two real 160-event excerpts of MAESTRO pieces, <bos> first."""
    import torch

    return torch.tensor([tokenizer.encode_midi(str(path))[:160] for path in maestro_files[:2]])


def run_without_hf_music(folder, out_file):
    """Load a checkpoint folder in a fresh process that cannot import hf_music; returns stdout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_HF_MUSIC, str(folder), str(out_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,  # not the repository root, so the source tree is not on sys.path either
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
