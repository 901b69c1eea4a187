"""The benchmark scripts behind the tables in docs/results.md still run and print those tables.

Smallest arguments, real subprocesses; the figures themselves are for the docs, not asserted
(a benchmark is a script that prints measurements, never a timed assertion). benchmark_space.py
is covered by test_space.py's browser run of the same app.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MAESTRO_MINI, POP909

# Every benchmark is a script run in its own process: none is in the fast tier.
pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NUMBER = r"[\d,.]+x?%?"


def run_benchmark(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    """Body rows of the markdown tables in the output (headers and rule lines left out)."""
    lines = [line.strip().strip("|") for line in output.splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in line.split("|")] for line in lines]
    rules = {i for i, row in enumerate(rows) if set("".join(row)) <= set("-:")}
    headers = {i - 1 for i in rules}
    return [row for i, row in enumerate(rows) if i not in rules | headers]


@pytest.mark.parametrize(
    ("script", "args", "first_cells"),
    [
        (
            "benchmark_generation.py",
            ["--presets", "tiny", "--lengths", "16", "--seconds", "1", "--seeds", "0"],
            [["tiny", "1.1M", "16"], ["0"]],
        ),
        (
            "benchmark_grammar.py",
            ["--samples", "2", "--max_new_tokens", "32"],
            [["unconstrained"], ["constrained (default)"]],
        ),
        (
            "benchmark_grammar.py",
            ["--speed", "--tokens", "16", "--repeats", "1", "--threads", "1"],
            [["1"], ["4"]],
        ),
        (
            "benchmark_tokenizer.py",
            ["--data", str(POP909), "--repeats", "1"],
            [["hf_music MidiTokenizer"], ["miditok MIDILike"], ["pretty_midi reference"]],
        ),
        ("benchmark_data.py", ["--data", str(MAESTRO_MINI)], [["1"], ["2"]]),
        (
            "benchmark_train.py",
            ["--steps", "3", "--data", str(MAESTRO_MINI)],
            [["bare PyTorch"], ["scripts/train.py"]],
        ),
    ],
)
def test_benchmark_script_prints_its_table_rows_of_numbers(script, args, first_cells):
    rows = table_rows(run_benchmark(script, *args))
    assert [row[: len(cells)] for row, cells in zip(rows, first_cells, strict=False)] == first_cells
    assert len(rows) == len(first_cells)
    for row in rows:  # every other cell is a measured number
        numbers = row[max(len(cells) for cells in first_cells) :]
        assert numbers and all(re.fullmatch(NUMBER, cell) for cell in numbers), row


def test_training_sweep_prints_tokens_per_second_and_writes_json(tmp_path):
    out = run_benchmark(
        "benchmark_train.py", "--sweep", "tiny:2", "tiny:3", "--block_size", "32", "--steps", "2",
        "--json", str(tmp_path / "sweep.json"),
    )  # fmt: skip
    rows = table_rows(out)
    assert [[row[0], row[2]] for row in rows] == [["tiny", "2 x 32"], ["tiny", "3 x 32"]]
    from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM

    params = MusicTransformerForCausalLM(
        MusicTransformerConfig.from_preset("tiny", n_positions=32)
    ).num_parameters()
    assert rows[0][1] == rows[1][1] == f"{params:,}"
    assert all(re.fullmatch(NUMBER, row[3]) and row[5] == "n/a" for row in rows)  # no GPU: no MFU
    import json

    assert [r["batch_size"] for r in json.loads((tmp_path / "sweep.json").read_text())] == [2, 3]


def test_sampling_evaluation_prints_a_row_per_setting(tmp_path):
    out = run_benchmark(
        "evaluate_sampling.py", "--maestro_dir", str(MAESTRO_MINI), "--settings", "default",
        "temperature=0.8,min_p=0.1", "--samples", "2", "--excerpts", "20", "--seconds", "3",
        "--long_samples", "1", "--long_seconds", "7", "--json", str(tmp_path / "sampling.json"),
    )  # fmt: skip
    rows = table_rows(out)
    # The excerpts' own row, one per setting, then the long piece's whole 3 s windows (7 s: two).
    assert [row[0] for row in rows] == [
        "MAESTRO test excerpts", "default", "temperature=0.8, min_p=0.1", "0-3 s", "3-6 s",
    ]  # fmt: skip
    assert all(re.fullmatch(r"\d/2", row[1]) and row[2] in ("yes", "no") for row in rows[1:3])
    assert all(re.fullmatch(r"\d+\.\d\d%", row[4]) for row in rows[:3])  # notes held >= 7.9 s
    assert "20 excerpts of 3 s from maestro-mini (MAESTRO v3.0.0 layout) test" in out
    report = json.loads((tmp_path / "sampling.json").read_text())
    medians = report["results"][0]["musicality"]["medians"]
    assert set(medians) == {
        "long_note_share", "pitch_class_entropy", "key_correlation", "key_consistency", "recurring_figure_share",
    }  # fmt: skip
    assert len(report["long_pieces"]["by_window"]) == 2


def test_vocabulary_comparison_scores_and_samples_each_checkpoint(tmp_path):
    import torch

    from hf_music import MidiTokenizer, MiditokTokenizer, MusicTransformerConfig, MusicTransformerForCausalLM

    folders = []
    for name, tokenizer in (("tsd", MiditokTokenizer.from_miditok("TSD")), ("performance", MidiTokenizer())):
        torch.manual_seed(0)
        config = MusicTransformerConfig.from_preset(
            "tiny", vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2
        )
        MusicTransformerForCausalLM(config).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        folders.append(str(tmp_path / name))
    out = run_benchmark(
        "compare_vocabularies.py", "--models", *folders, "--maestro_dir", str(MAESTRO_MINI), "--samples", "2",
        "--excerpts", "5", "--seconds", "3", "--json", str(tmp_path / "vocabularies.json"),
    )  # fmt: skip
    rows = table_rows(out)
    assert [row[1] for row in rows] == ["TSD", "performance events"]
    for row, result in zip(rows, json.loads((tmp_path / "vocabularies.json").read_text()), strict=True):
        assert math.isclose(result["nats_per_second"], result["nats_per_token"] * result["tokens_per_second"])
        assert re.fullmatch(r"\d/2", row[6]) and result["scored_tokens"] > 1000


def test_decoder_benchmark_prints_speed_and_music_rows():
    out = run_benchmark(
        "benchmark_decoder.py", "--tokens", "16", "--batch", "2", "--book_tokens", "8", "--seconds", "1",
        "--threads", "1", "--repeats", "1", "--music_seeds", "2",
    )  # fmt: skip
    rows = table_rows(out)
    backends = ("lean", "onnx", "onnx-int8", "transformers")
    speed, music = rows[:18], rows[18:]
    expected = [["book loop", "1"]] + [[backend, batch] for backend in backends for batch in ("1", "2")]
    assert [row[:3] for row in speed] == [
        [model, *cells] for model in ("default", "tiny") for cells in expected
    ]
    assert all(row[3] == "8" for row in speed if row[1] == "book loop")
    assert all(row[3] == str(16 * int(row[2])) for row in speed if row[1] != "book loop")
    assert all(re.fullmatch(NUMBER, cell) for row in speed for cell in row[4:])
    assert [row[:2] for row in music] == [["1 s", backend] for backend in backends]
    by_backend = {row[1]: row for row in music}
    assert by_backend["lean"][2:4] == by_backend["transformers"][2:4]  # the same pieces from both
    assert all(re.fullmatch(NUMBER, cell) for row in music for cell in row[2:])


def test_backend_comparison_scores_real_music_and_samples_with_each_backend(tmp_path):
    from hf_music import MidiTokenizer
    from hf_music.token_pack import load_corpus

    pack = load_corpus(MidiTokenizer(), maestro=MAESTRO_MINI, splits=("test",))
    tokens_file = pack.save(tmp_path / "test.npz")
    out = run_benchmark(
        "compare_backends.py",
        "--tokens_file",
        str(tokens_file),
        "--blocks",
        "2",
        "--samples",
        "2",
        "--seconds",
        "2",
    )
    rows = table_rows(out)
    assert [row[0] for row in rows] == [
        "pytorch (lean, transformers)", "onnx", "onnx-int8",
        "lean", "onnx", "onnx-int8", "transformers", "lean, other seeds",
    ]  # fmt: skip
    assert abs(float(rows[1][2])) < 1e-3 and abs(float(rows[2][2])) < 0.05  # NLL change against PyTorch
    lean, transformers = rows[3], rows[6]
    assert (
        lean[2:] == transformers[2:] and lean[-1] == "1.00"
    )  # the same ids for a seed, all statistics alike
    assert all(re.fullmatch(r"\d+\.\d{3} ± \d+\.\d{3}", row[2]) for row in rows[3:])
