"""Shared fixtures: paths to the read-only data in ../shared/data and small objects."""

from __future__ import annotations

import os
import sys
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
