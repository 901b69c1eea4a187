"""The benchmark scripts behind the README's tables still run and print those tables.

Smallest arguments, real subprocesses; the figures themselves are for the README, not asserted
(a benchmark is a script that prints measurements, never a timed assertion). benchmark_space.py
is covered by test_space.py's browser run of the same app.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MAESTRO_MINI, POP909

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
        ("benchmark_generation.py", ["--presets", "tiny", "--lengths", "16"], [["tiny", "1.1M", "16"]]),
        (
            "benchmark_grammar.py",
            ["--num", "2", "--max_new_tokens", "32"],
            [["unconstrained"], ["constrained (default)"]],
        ),
        (
            "benchmark_tokenizer.py",
            ["--data", str(POP909), "--repeats", "1"],
            [["hf_music MidiTokenizer"], ["miditok MIDILike"], ["pretty_midi reference"]],
        ),
        ("benchmark_data.py", ["--data", str(MAESTRO_MINI)], [["1"], ["2"]]),
        ("benchmark_train.py", ["--steps", "3"], [["bare PyTorch"], ["scripts/train.py"]]),
    ],
)
def test_benchmark_prints_its_table(script, args, first_cells):
    rows = table_rows(run_benchmark(script, *args))
    assert [row[: len(cells)] for row, cells in zip(rows, first_cells, strict=False)] == first_cells
    assert len(rows) == len(first_cells)
    for row in rows:  # every other cell is a measured number
        numbers = row[max(len(cells) for cells in first_cells) :]
        assert numbers and all(re.fullmatch(NUMBER, cell) for cell in numbers), row
