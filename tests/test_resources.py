"""What ships inside the package: the embedded default model (and its card) and the demo prompts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
from conftest import BAD_MIDI as BAD_MIDI_DIR
from conftest import run_without_hf_music
from huggingface_hub import ModelCard

import hf_music
from hf_music import (
    MidiTokenizer,
    MusicTransformerForCausalLM,
    bundled_prompts,
    generate_midi,
    load_default_model,
)
from hf_music.hub import CODE_FILES
from hf_music.music_transformer import CHECKPOINT_CODE, CODE_DIR
from hf_music.resources import DEFAULT_MODEL_DIR
from hf_music.run_record import RunRecord


@pytest.fixture(scope="module")
def default_model():
    return load_default_model()


def test_embedded_checkpoint_is_a_small_complete_checkpoint():
    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "generation_config.json"} <= names
    assert {"README.md", "run_record.json"} <= names
    assert set(CODE_FILES) <= names  # like any checkpoint: loadable with trust_remote_code
    assert {"tokenizer.json", "custom_generate"} <= names  # the fast tokenizer and the grammar for Hub users
    assert json.loads((DEFAULT_MODEL_DIR / "tokenizer_config.json").read_text())["model_max_length"] == 2048
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]  # safetensors only
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= 16 * 2**20


def test_the_embedded_models_code_is_the_packages_byte_for_byte():
    """Every code file the embedded checkpoint carries is a copy of hf_music/music_transformer/'s
    (refresh: python scripts/embed_default_model.py --checkpoint hf_music/assets/default_model)."""
    carried = {
        str(p.relative_to(DEFAULT_MODEL_DIR))
        for p in DEFAULT_MODEL_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert carried == set(CHECKPOINT_CODE) - {"tokenization_miditok.py"}  # a performance vocabulary
    stale = [
        name
        for name in carried
        if (DEFAULT_MODEL_DIR / name).read_bytes() != (CODE_DIR / CHECKPOINT_CODE[name]).read_bytes()
    ]
    assert not stale, f"embedded copies differ from the package's: {stale}"


@pytest.mark.slow
def test_embedded_checkpoint_loads_without_hf_music(tmp_path):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "default_model")
    out = run_without_hf_music(folder, tmp_path / "out.mid")
    assert "MusicTransformerForCausalLM MidiTokenizer" in out
    assert (tmp_path / "out.mid").stat().st_size > 0


def test_embedded_model_and_tokenizer_match_the_package(default_model):
    model, tokenizer = default_model
    assert isinstance(model, MusicTransformerForCausalLM) and not model.training
    package_tokenizer = MidiTokenizer()
    assert tokenizer.get_vocab() == package_tokenizer.get_vocab()
    for field in ("time_resolution_ms", "max_time_shift", "num_velocity_bins", "sustain_pedal"):
        assert getattr(tokenizer, field) == getattr(package_tokenizer, field)
    assert model.config.vocab_size == len(package_tokenizer)
    assert (model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id) == (0, 1, 2)


def test_seeded_sample_is_valid_midi_with_notes_over_the_requested_length(default_model, tmp_path):
    model, tokenizer = default_model
    score = generate_midi(model, tokenizer, max_seconds=20, seed=0, max_new_tokens=4096)
    again = generate_midi(model, tokenizer, max_seconds=20, seed=0, max_new_tokens=4096)
    path, again_path = tmp_path / "sample.mid", tmp_path / "again.mid"
    score.dump_midi(str(path))
    again.dump_midi(str(again_path))
    assert path.read_bytes() == again_path.read_bytes()  # seeded: the same piece
    notes = tokenizer.midi_to_notes(path)  # a valid MIDI file that reads back
    assert len(notes) >= 40
    # Notes spread over the 20 s: every 5 s quarter has onsets, and the music lasts about 20 s.
    quarters = np.bincount(np.minimum(notes.onset // 5, 3).astype(int), minlength=4)
    assert (quarters > 0).all(), quarters
    assert 19 <= notes.offset.max() <= 23


def test_card_states_licence_command_and_the_measured_splits():
    card = ModelCard.load(DEFAULT_MODEL_DIR / "README.md")
    record = RunRecord.load(DEFAULT_MODEL_DIR)
    assert card.data.license == "cc-by-nc-sa-4.0" and record.license == "cc-by-nc-sa-4.0"
    command = record.training.command
    assert command.startswith("python scripts/train.py") and command in card.text
    assert record.training.device in card.text and record.training_data[0].name == "MAESTRO v3.0.0"
    assert {(e.corpus, e.split) for e in record.evaluations} == {
        ("MAESTRO v3.0.0", "validation"), ("MAESTRO v3.0.0", "test")
    }  # fmt: skip
    assert {e.split: e.pieces for e in record.evaluations} == {
        "validation": 137,
        "test": 177,
    }  # the full splits
    index = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    for evaluation in record.evaluations:
        nll = {row.name: row.nats_per_token for row in evaluation.rows}
        assert nll["model"] < nll["bigram"] - 1.0 < nll["unigram"]  # a wide margin over the yardstick
        assert f"{nll['model']:.4f}" in card.text and f"{nll['bigram']:.4f}" in card.text
        assert index[(f"MAESTRO v3.0.0 ({evaluation.split} split)", "loss")] == round(nll["model"], 4)


@pytest.mark.slow
def test_python_m_hf_music_writes_midi_and_wav_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "hf_music", "--out", str(tmp_path / "piece.mid"), "--seconds", "8", "--seed", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    notes = MidiTokenizer().midi_to_notes(tmp_path / "piece.mid")
    assert len(notes) > 0 and 7 <= notes.offset.max() <= 11
    with wave.open(str(tmp_path / "piece.wav")) as wav:
        assert wav.getnframes() / wav.getframerate() >= 8
    assert "wrote" in result.stdout


def run_cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "hf_music", "--no_wav", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_cli_long_piece_has_the_requested_length(tmp_path):
    # 50 s is past the model's 2048-event context for dense music: the sliding window carries on.
    result = run_cli(tmp_path, "--seconds", 50, "--seed", 0, "--out", tmp_path / "long.mid")
    assert result.returncode == 0, result.stderr[-3000:]
    notes = MidiTokenizer().midi_to_notes(tmp_path / "long.mid")
    assert 49 <= notes.offset.max() <= 53 and notes.onset.max() > 40


@pytest.mark.slow
def test_cli_bad_input_is_one_line_naming_it(tmp_path):
    bad = BAD_MIDI_DIR / "truncated.mid"
    result = run_cli(tmp_path, "--prompt", bad, "--out", tmp_path / "x.mid")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith("python -m hf_music: error:") and "truncated.mid" in line
    too_long = run_cli(tmp_path, "--seconds", 601, "--out", tmp_path / "y.mid")
    assert too_long.returncode == 1 and "--seconds must be in (0, 600]" in too_long.stderr


def test_bundled_prompts_have_licence_and_attribution():
    prompts = bundled_prompts()
    assert len(prompts) == 3
    folder = next(iter(prompts.values())).parent
    assert "Attribution-NonCommercial-ShareAlike 4.0" in (folder / "LICENSE").read_text()
    readme = (folder / "README.md").read_text()
    assert all(name in readme for name in prompts)
    assert hf_music.__version__


def test_load_model_never_runs_code_from_a_checkpoint(tmp_path):
    from hf_music import load_model

    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "planted")
    marker = tmp_path / "code_ran"
    for name in CODE_FILES:  # a line that would leave a file behind if the checkpoint's code ran
        with open(folder / name, "a") as handle:
            handle.write(f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    model, tokenizer = load_model(folder)
    assert type(model) is MusicTransformerForCausalLM and type(tokenizer) is MidiTokenizer
    assert not marker.exists()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(folder)


def edited_checkpoint(tmp_path, name: str, **config_changes) -> object:
    """A copy of the embedded checkpoint with config.json changed."""
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


@pytest.mark.slow
def test_weights_that_do_not_fill_the_config_are_refused_in_one_line(tmp_path):
    from hf_music import load_model
    from hf_music.resources import CheckpointError

    layers = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["n_layer"]
    more = edited_checkpoint(tmp_path, "more_layers", n_layer=layers + 2)  # would be 2 random layers
    with pytest.raises(CheckpointError, match=r"more_layers/model\.safetensors lacks 24 tensor\(s\)"):
        load_model(more)
    fewer = edited_checkpoint(tmp_path, "fewer_layers", n_layer=layers - 1)
    with pytest.raises(CheckpointError, match=r"fewer_layers/model\.safetensors holds \d+ tensor\(s\) its"):
        load_model(fewer)
    narrower = edited_checkpoint(tmp_path, "narrower", n_inner=64)
    with pytest.raises(CheckpointError, match=r"narrower/model\.safetensors holds .* of another shape"):
        load_model(narrower)
    truncated = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match=r"truncated/model\.safetensors is not a readable safetensors"):
        load_model(truncated)
    for folder in (more, truncated):  # the command: one line, status 1, no traceback
        result = run_cli(tmp_path, "--model", folder, "--out", tmp_path / "x.mid")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        (line,) = [line for line in result.stderr.splitlines() if "error" in line]
        assert line.startswith("python -m hf_music: error:") and f"{folder.name}/model.safetensors" in line


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
        (
            {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
            "http://127.0.0.1:9 cannot be reached",
        ),
    ],
    ids=["offline", "unreachable_endpoint"],
)
@pytest.mark.slow
def test_a_hub_id_out_of_reach_is_one_line_without_retries(tmp_path, env, message):
    # huggingface_hub retried an unreachable endpoint 5 times (30 s), printing a warning a retry.
    result = subprocess.run(
        [sys.executable, "-m", "hf_music", "--model", "someone/music-transformer", "--out", tmp_path / "x.mid"],
        capture_output=True, text=True, env={**os.environ, "HF_HOME": str(tmp_path / "home"), **env},
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("python -m hf_music: error: someone/music-transformer") and message in line


def test_a_folder_that_is_not_there_is_one_line_for_every_command(tmp_path, monkeypatch, capsys):
    # Before: evaluate ended in huggingface_hub's HFValidationError traceback ("Repo id must be in the
    # form ...") for runs/x/best, and generate named only the repo-id rule, never the missing folder.
    from hf_music.cli import run
    from hf_music.resources import CheckpointError, load_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/x/best", "runs/nonexistent", "./model", "not a hub id!"):
        with pytest.raises(CheckpointError, match="no checkpoint folder there"):
            load_model(name)
    status = run("evaluate", ["--model", "runs/x/best", "--tokens_file", "x.npz", "--split", "validation"])
    assert status == 1
    assert capsys.readouterr().err.strip() == (
        "hf-music evaluate: error: runs/x/best: no checkpoint folder there (a Hub id is written user/name)"
    )
