"""Tokens/s of scripts/train.py's loop against a bare PyTorch loop on the same model and batches.

    python scripts/benchmark_train.py [--preset tiny] [--block_size 256] [--batch_size 8] [--steps 60]

Both do forward, backward, gradient clipping, AdamW and the LR schedule; the bare loop has no
Accelerate, no data pipeline and no logging. train.py's figure excludes evaluation and
checkpoint time (it reports train_tokens_per_second in metrics.json). On a GPU add
--mixed_precision bf16 (and --compile) to record tokens/s and MFU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import get_scheduler

from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM

REPO = Path(__file__).resolve().parents[1]


def bare_loop(args) -> float:
    torch.manual_seed(0)
    model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset(args.preset)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=10, num_training_steps=args.steps)
    batch = torch.randint(3, 391, (args.batch_size, args.block_size))
    for step in range(args.steps + 5):
        if step == 5:  # warm-up steps excluded
            started = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return args.steps * args.batch_size * args.block_size / (time.perf_counter() - started)


def script_loop(args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, str(REPO / "scripts" / "train.py"), "--output_dir", f"{tmp}/run", "--preset", args.preset,
            "--maestro_dir", str(args.data), "--block_size", str(args.block_size), "--batch_size", str(args.batch_size),
            "--max_steps", str(args.steps), "--eval_steps", str(args.steps), "--checkpointing_steps", str(args.steps),
            "--max_eval_batches", "1", "--report_to", "none", "--warmup_steps", "10",
            "--mixed_precision", args.mixed_precision, *(["--compile"] if args.compile else []),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        return json.loads(Path(f"{tmp}/run/metrics.json").read_text())["train_tokens_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--mixed_precision", default="no")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "maestro-mini")
    args = parser.parse_args()
    bare = bare_loop(args)
    script = script_loop(args)
    print(
        f"{args.preset}, batch {args.batch_size} x {args.block_size}, {args.steps} steps, {torch.get_num_threads()} threads"
    )
    print("| loop | tokens/s |\n|---|---:|")
    print(f"| bare PyTorch | {bare:,.0f} |\n| scripts/train.py | {script:,.0f} |")
    print(f"\noverhead of train.py: {100 * (1 - script / bare):.1f}%")


if __name__ == "__main__":
    main()
