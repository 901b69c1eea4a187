"""Training throughput: scripts/train.py's loop against a bare PyTorch loop, or a GPU sweep with MFU.

    python scripts/benchmark_train.py [--preset tiny] [--block_size 256] [--batch_size 8] [--steps 60]
    python scripts/benchmark_train.py --sweep small:64 base:32 --block_size 2048 \
        --mixed_precision bf16 --compile --dropout 0 --steps 10 --json sweep.json     # on a GPU

Both loops do forward, backward, gradient clipping, AdamW and the LR schedule; the bare loop has
no Accelerate, no data pipeline and no logging. train.py's figure excludes evaluation and
checkpoint time (it reports its training throughput in the run record). --sweep times only the
bare loop, as train.py sets it up on a GPU (bf16 autocast, regional torch.compile, fused AdamW,
no attention mask so SDPA picks its flash kernel), for each PRESET:BATCH, and prints tokens/s
and MFU: training FLOPs (hf_music.flops) over the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import get_scheduler

from hf_music import MusicTransformerConfig, MusicTransformerForCausalLM
from hf_music.flops import peak_flops, training_flops_per_token
from hf_music.run_record import RunRecord

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HF_MUSIC_SHARED_DATA", REPO.parent / "shared" / "data"))
WARMUP_STEPS = 5  # excluded from the timing: compilation and allocator warm-up


def bare_loop(args, preset: str | None = None, batch_size: int | None = None) -> float:
    """Tokens/s of a plain training loop on random ids."""
    preset, batch_size = preset or args.preset, batch_size or args.batch_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch._dynamo.reset()  # each row compiles afresh: shapes of an earlier row would make these dynamic
    torch.manual_seed(0)
    overrides = {"n_positions": args.block_size}
    if args.dropout is not None:
        overrides.update(resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout)
    config = MusicTransformerConfig.from_preset(preset, **overrides)
    model = MusicTransformerForCausalLM(config).to(device).train()
    if args.compile:
        for block in model.transformer.h:
            block.compile()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), fused=device == "cuda"
    )
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=10, num_training_steps=args.steps)
    batch = torch.randint(3, 391, (batch_size, args.block_size), device=device)
    autocast = (
        torch.autocast(device, dtype=torch.bfloat16)
        if args.mixed_precision == "bf16"
        else contextlib.nullcontext()
    )
    for step in range(args.steps + WARMUP_STEPS):
        if step == WARMUP_STEPS:
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with autocast:
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # waits for the GPU
    return args.steps * batch_size * args.block_size / (time.perf_counter() - started)


def sweep(args) -> list[dict]:
    """Tokens/s and MFU of the bare loop for each PRESET:BATCH, one table row each."""
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_flops(device_name)
    rows = []
    print(
        "| preset | parameters | batch x context | tokens/s | TFLOP/s | MFU | device |\n|---|---:|---:|---:|---:|---:|---|"
    )
    for spec in args.sweep:
        preset, _, batch = spec.partition(":")
        batch_size = int(batch or args.batch_size)
        config = MusicTransformerConfig.from_preset(preset, n_positions=args.block_size)
        params = MusicTransformerForCausalLM(config).num_parameters()
        started = time.perf_counter()
        try:
            tokens_per_second = bare_loop(args, preset, batch_size)
        except torch.OutOfMemoryError:
            print(
                f"| {preset} | {params:,} | {batch_size} x {args.block_size} | out of memory | | | {device_name} |"
            )
            continue
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        flops = training_flops_per_token(config, args.block_size) * tokens_per_second
        row = {
            "preset": preset, "parameters": params, "batch_size": batch_size, "block_size": args.block_size,
            "tokens_per_second": tokens_per_second, "tflops": flops / 1e12, "mfu": flops / peak if peak else None,
            "device": device_name, "peak_flops": peak, "mixed_precision": args.mixed_precision,
            "compile": args.compile, "dropout": args.dropout, "seconds_with_compile": time.perf_counter() - started,
        }  # fmt: skip
        rows.append(row)
        mfu = f"{100 * row['mfu']:.1f}%" if peak else "n/a"
        print(
            f"| {preset} | {params:,} | {batch_size} x {args.block_size} | {tokens_per_second:,.0f} | "
            f"{row['tflops']:.1f} | {mfu} | {device_name} |",
            flush=True,
        )
    return rows


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
        return RunRecord.load(f"{tmp}/run").training.tokens_per_second


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--dropout", type=float, default=None, help="override the presets' dropout")
    parser.add_argument("--sweep", nargs="+", default=None, metavar="PRESET:BATCH", help="bare loop only")
    parser.add_argument("--json", default=None, help="with --sweep: write the rows here")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "maestro-mini")
    args = parser.parse_args()
    if args.sweep:
        rows = sweep(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return
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
