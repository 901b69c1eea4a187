"""The `hf-music` command and the wheel it comes in."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO_ROOT


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


def test_a_missing_train_extra_is_one_line_naming_the_extra(tmp_path):
    from conftest import MAESTRO_MINI

    # The README's first install (the audio extra) lacks accelerate and datasets: a module set to
    # None in sys.modules cannot be imported, as if it were not installed.
    for missing, args in (
        ("accelerate", ["train", "--maestro_dir", MAESTRO_MINI]),
        ("datasets", ["prepare", "--maestro_dir", MAESTRO_MINI, "--out", tmp_path / "x.npz"]),
    ):
        code = f"import sys; sys.modules[{missing!r}] = None; from hf_music.cli import main; sys.exit(main())"
        result = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [
            f"hf-music {args[0]}: needs the train extra ({missing} is not installed): "
            "pip install -e '.[train]' (from a checkout) or pip install 'hf_music[train]'"
        ]
    script = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.modules['accelerate'] = None; "
         f"runpy.run_path({str(REPO_ROOT / 'scripts' / 'train.py')!r}, run_name='__main__')", "--help"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert script.returncode == 1 and "pip install -e '.[train]'" in script.stderr


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
