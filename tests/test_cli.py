"""The `hf-music` command and the wheel it comes in."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import BAD_MIDI, REPO_ROOT
from raw_midi import late_note_bomb


def hf_music_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "hf_music.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


OPTIONS_OF_EACH_COMMAND = {
    "generate": ["--seconds", "--samples", "--seed", "--temperature", "--trust_remote_code"],
    "train": [
        "--tokens_file",
        "--max_minutes",
        "--num_evaluations",
        "--init_from",
        "--trust_remote_code",
    ],
    "evaluate": ["--tokens_file", "--split", "--stride", "--samples"],
    "push": ["--checkpoint", "--repo_id", "--dry_run"],
    "prepare": ["--maestro_zip", "--midi_dir", "--out"],
    "export-web": ["--model", "--out"],
}


def test_every_command_lists_its_options_in_process(capsys, monkeypatch):
    from hf_music.cli import COMMANDS, main

    monkeypatch.setattr(sys, "argv", ["hf-music"])  # main() renames the program in sys.argv
    assert main(["--help"]) == 0
    overview = capsys.readouterr().out
    assert set(COMMANDS) == set(OPTIONS_OF_EACH_COMMAND)
    for command in COMMANDS:
        assert f"  {command} " in overview
    for command, options in OPTIONS_OF_EACH_COMMAND.items():
        with pytest.raises(SystemExit) as exit_status:
            main([command, "--help"])
        assert exit_status.value.code == 0, command
        help_text = capsys.readouterr().out
        assert help_text.startswith(f"usage: hf-music {command}"), help_text[:200]
        assert all(option in help_text for option in options), (command, help_text)
    assert main(["compose"]) == 2
    assert "unknown command 'compose'" in capsys.readouterr().err


@pytest.mark.slow
def test_python_m_hf_music_cli_lists_every_command_and_its_options():
    overview = hf_music_cli("--help")
    assert overview.returncode == 0
    for command in ("generate", "train", "evaluate", "push", "prepare"):
        assert f"  {command} " in overview.stdout
    for command, options in OPTIONS_OF_EACH_COMMAND.items():
        result = hf_music_cli(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: hf-music {command}")
        assert all(option in result.stdout for option in options), (command, result.stdout)
    unknown = hf_music_cli("compose")
    assert unknown.returncode == 2 and "unknown command 'compose'" in unknown.stderr


@pytest.mark.slow
def test_the_wheel_can_train_and_push(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO_ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("hf_music-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("cli", "commands/train", "commands/evaluate", "commands/push", "commands/prepare",
                   "commands/export_web", "music_transformer/grammar", "token_pack", "windows"):  # fmt: skip
        assert f"hf_music/{module}.py" in names
    assert "hf_music/assets/default_model/model.safetensors" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hf-music = hf_music.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_generate_with_a_time_bomb_prompt_prints_one_line(tmp_path):
    # Before: numpy's MemoryError (34 GB) escaped as a traceback.
    bomb = tmp_path / "bomb.mid"
    bomb.write_bytes(late_note_bomb())
    result = hf_music_cli("generate", "--prompt", bomb, "--seconds", 1, "--out", tmp_path / "out.mid")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]  # not the loading bars
    assert errors == [
        f"python -m hf_music: error: {bomb}: lasts 1,250,999.8 h, over the limit of 6 h per piece"
    ]


@pytest.mark.slow
def test_what_the_commands_write_by_default_is_git_ignored():
    written = ["piece.mid", "piece.wav", "piece_2.mid", "piece_2.wav", "runs/music_transformer/best/config.json",
               "data/maestro-v3.0.0.tokens.npz", "test-artifacts/space_1280x800.png"]  # fmt: skip
    result = subprocess.run(["git", "check-ignore", *written], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.stdout.split() == written


def held_note_midi(path, seconds: float):
    """A MIDI file of a few dozen bytes: middle C held for `seconds`."""
    import symusic

    score = symusic.Score(1000, ttype="second")
    track = symusic.Track(program=0, ttype="second")
    track.notes.append(symusic.Note(0.0, seconds, 60, 90, ttype="second"))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


@pytest.mark.slow
def test_generate_continues_a_five_hour_note_quietly_marked_and_bounded(tmp_path):
    import wave

    import symusic

    prompt = held_note_midi(tmp_path / "held.mid", 5 * 3600)
    # (Pieces over 6 h are refused whole: tests/test_tokenization.py.)
    assert prompt.stat().st_size < 50
    result = hf_music_cli(
        "generate", "--prompt", prompt, "--seconds", 3, "--seed", 0, "--out", tmp_path / "piece.mid"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Quiet: no weight-loading bar nor transformers warnings, only the piece's own progress bar.
    assert "Loading weights" not in result.stderr and "attention_mask" not in result.stderr
    assert "prompt: the first 300 s of held.mid, which lasts 18000 s (--prompt_seconds)" in result.stdout
    score = symusic.Score(str(tmp_path / "piece.mid")).to("second")
    # The prompt's first 300 s, a marker, then the new music (before: all five hours, and no marker).
    assert [(m.time, m.text) for m in score.markers] == [(300.0, "hf_music: new music starts here")]
    onsets = score.tracks[0].notes.numpy()["time"]
    assert onsets.min() == 0 and 300 <= onsets.max() < 304 and score.end() < 304
    with wave.open(str(tmp_path / "piece.wav")) as wav:  # as the Space's: 44.1 kHz stereo (was 22 kHz mono)
        assert (wav.getframerate(), wav.getnchannels()) == (44100, 2)
        assert wav.getnframes() / 44100 < 305


@pytest.mark.slow
def test_a_missing_extra_is_one_line_naming_it(tmp_path):
    from conftest import MAESTRO_MINI

    # The README's first install (the audio extra) lacks accelerate and datasets: a module set to
    # None in sys.modules cannot be imported, as if it were not installed.
    # The onnx extra likewise for export-web.
    for missing, extra, args in (
        ("accelerate", "train", ["train", "--maestro_dir", MAESTRO_MINI]),
        ("datasets", "train", ["prepare", "--maestro_dir", MAESTRO_MINI, "--out", tmp_path / "x.npz"]),
        ("onnxscript", "onnx", ["export-web", "--out", tmp_path / "web"]),
    ):
        code = f"import sys; sys.modules[{missing!r}] = None; from hf_music.cli import main; sys.exit(main())"
        result = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [
            f"hf-music {args[0]}: needs the {extra} extra ({missing} is not installed): "
            f"pip install -e '.[{extra}]' (from a checkout) or pip install 'hf_music[{extra}]'"
        ]
    script = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.modules['accelerate'] = None; "
         f"runpy.run_path({str(REPO_ROOT / 'scripts' / 'train.py')!r}, run_name='__main__')", "--help"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert script.returncode == 1 and "pip install -e '.[train]'" in script.stderr
    # python -m hf_music (and scripts/generate.py) go through the same dispatch: the onnx backends
    module = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.modules['onnxruntime'] = None; "
         "runpy.run_module('hf_music', run_name='__main__')", "--backend", "onnx-int8", "--no_wav",
         "--seconds", "1", "--out", str(tmp_path / "piece.mid")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert module.returncode == 1 and "Traceback" not in module.stderr, module.stderr[-2000:]
    assert "hf-music generate: needs the onnx extra (onnxruntime is not installed)" in module.stderr


@pytest.mark.slow
def test_a_damaged_checkpoint_or_token_pack_is_one_line_for_every_command(tmp_path):
    import shutil

    from hf_music.resources import DEFAULT_MODEL_DIR

    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "truncated")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:1000])
    pack = tmp_path / "junk.tokens.npz"
    pack.write_bytes(b"not a zip")
    for args in (
        ["evaluate", "--model", folder, "--tokens_file", pack],
        ["evaluate", "--tokens_file", pack],
        ["train", "--tokens_file", pack, "--report_to", "none", "--output_dir", tmp_path / "run"],
    ):
        result = hf_music_cli(*args, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        (line,) = result.stderr.strip().splitlines()
        name = "truncated/model.safetensors" if "--model" in args else "junk.tokens.npz"
        assert line.startswith(f"hf-music {args[0]}: error: ") and name in line


@pytest.mark.slow
def test_a_prompt_without_notes_says_the_piece_starts_from_silence(tmp_path):
    result = hf_music_cli(
        "generate",
        "--prompt",
        BAD_MIDI / "no_notes.mid",
        "--seconds",
        1,
        "--no_wav",
        "--out",
        tmp_path / "x.mid",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "prompt: no_notes.mid has no notes: composing from silence" in result.stdout
