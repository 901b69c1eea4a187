"""Time to load + tokenize + cut windows of maestro-mini with 1 and 2 processes, throughput, and
the extrapolation to full MAESTRO v3.0.0 by duration (maestro-mini is 4.2 of its 198.65 hours).

Windows are cut as train.py cuts them: the train split's WindowSampler (every stretched version
encoded, then one augmented epoch), the other splits' contiguous evaluation blocks.

    python scripts/benchmark_data.py [--data ../shared/data/maestro-mini] [--block_size 2048]

The datasets cache is disabled so that every run really reads, tokenizes and cuts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import datasets

from hf_music import MidiTokenizer
from hf_music.data import corpus_statistics, load_maestro, tokenize_dataset
from hf_music.windows import Augmentation, WindowSampler, evaluation_blocks

FULL_MAESTRO_HOURS = 198.65


def run(data: Path, tokenizer: MidiTokenizer, num_proc: int | None, block_size: int):
    timings = {}
    started = time.perf_counter()
    ds = load_maestro(data, num_proc=num_proc)
    timings["load"] = time.perf_counter() - started
    started = time.perf_counter()
    ds = tokenize_dataset(ds, tokenizer, num_proc=num_proc)
    timings["tokenize"] = time.perf_counter() - started
    started = time.perf_counter()
    sampler = WindowSampler(ds["train"]["input_ids"], block_size, tokenizer, Augmentation(), seed=0)
    windows = len(sampler.epoch(0)["input_ids"])
    for name in ("validation", "test"):
        windows += len(evaluation_blocks(ds[name]["input_ids"], block_size)[0])
    timings["windows"] = time.perf_counter() - started
    stats = [corpus_statistics(split, tokenizer) for split in ds.values()]
    totals = {key: sum(s[key] for s in stats) for key in ("notes", "tokens", "seconds")}
    return timings, totals, windows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/maestro-mini"
    )
    parser.add_argument("--block_size", type=int, default=2048)
    args = parser.parse_args()
    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokenizer = MidiTokenizer()
    rows = []
    for num_proc in (None, 2):
        timings, totals, num_blocks = run(args.data, tokenizer, num_proc, args.block_size)
        rows.append((num_proc or 1, timings, totals, num_blocks))
    hours = rows[0][2]["seconds"] / 3600
    print(f"\nmaestro-mini: {hours:.2f} h, {rows[0][2]['notes']:,} notes, {rows[0][2]['tokens']:,} tokens\n")
    print(
        "| processes | load s | tokenize s | windows s | total s | notes/s | tokens/s | full MAESTRO (est.) s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for procs, timings, totals, _ in rows:
        total = sum(timings.values())
        full = total * FULL_MAESTRO_HOURS / hours
        print(
            f"| {procs} | {timings['load']:.2f} | {timings['tokenize']:.2f} | {timings['windows']:.2f} | {total:.2f} "
            f"| {totals['notes'] / total:,.0f} | {totals['tokens'] / total:,.0f} | {full:.0f} |"
        )


if __name__ == "__main__":
    main()
