"""The `hf-music` command and the wheel it comes in."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO_ROOT
from raw_midi import late_note_bomb


def hf_music_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "hf_music.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_every_command_lists_its_options():
    overview = hf_music_cli("--help")
    assert overview.returncode == 0
    for command in ("generate", "train", "evaluate", "push", "prepare"):
        assert f"  {command} " in overview.stdout
    expected = {
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
    }
    for command, options in expected.items():
        result = hf_music_cli(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: hf-music {command}")
        assert all(option in result.stdout for option in options), (command, result.stdout)
    unknown = hf_music_cli("compose")
    assert unknown.returncode == 2 and "unknown command 'compose'" in unknown.stderr


def test_the_wheel_can_train_and_push(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(REPO_ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("hf_music-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("cli", "train", "evaluate", "push", "prepare", "token_pack", "windows"):
        assert f"hf_music/{module}.py" in names
    assert "hf_music/assets/default_model/model.safetensors" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hf-music = hf_music.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


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
