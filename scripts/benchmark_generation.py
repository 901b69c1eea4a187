"""Tokens/s of hf_music.generate_midi (model.generate, KV cache) against the book's sampling loop
(recompute the whole sequence at every step, no cache), same model, same seed, same run, CPU.

    python scripts/benchmark_generation.py [--presets tiny small] [--lengths 256 1024] [--threads N]
    python scripts/benchmark_generation.py --presets --seconds 20 --seeds 0 1 2 3 4   # embedded model only

The preset models are randomly initialised: speed does not depend on the weights. The
embedded model is timed as users call it: 20 s of music from silence (`max_seconds`), batch 1,
one row per seed; how many events that takes depends on the music. Both loops sample with
temperature 1.0 from the full distribution; generate_midi runs with its grammar constraint on
(the default users get), which adds its own cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_music import (
    MidiTokenizer,
    MusicTransformerConfig,
    MusicTransformerForCausalLM,
    generate_ids,
    load_default_model,
)
from hf_music.generation import time_steps


@torch.inference_mode()
def book_loop(model, tokenizer, max_new_tokens, seed):
    """The sampling loop of the book's chapter 14: full forward pass at every step."""
    torch.manual_seed(seed)
    ids = torch.tensor([[tokenizer.bos_token_id]])
    context = model.config.n_positions
    for _ in range(max_new_tokens):
        logits = model(ids[:, -context:], use_cache=False).logits[:, -1, :]
        next_id = torch.multinomial(torch.softmax(logits / 1.0, dim=-1), 1)
        ids = torch.cat([ids, next_id], dim=1)
    return ids


def embedded_model_table(seconds: float, seeds: list[int]):
    """Wall time of `seconds` of music from the embedded model, one row per seed."""
    model, tokenizer = load_default_model()
    generate_ids(model, tokenizer, max_new_tokens=8, seed=0)  # warm-up
    print(f"\nembedded model ({model.num_parameters():,} parameters), {seconds:g} s of music, batch 1\n")
    print("| seed | events | seconds of music | notes | wall s | tokens/s |\n|---:|---:|---:|---:|---:|---:|")
    for seed in seeds:
        started = time.perf_counter()
        (row,) = generate_ids(model, tokenizer, max_seconds=seconds, max_new_tokens=4096, seed=seed)
        wall = time.perf_counter() - started
        music = float(time_steps(torch.tensor(row), tokenizer)) * tokenizer.time_step
        print(
            f"| {seed} | {len(row) - 1} | {music:.1f} | {len(tokenizer.ids_to_notes(row))} | {wall:.2f} | "
            f"{(len(row) - 1) / wall:,.0f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=["tiny", "small"])
    parser.add_argument("--seconds", type=float, default=20.0, help="music asked of the embedded model")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="none: skip it")
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = MidiTokenizer()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print("| preset | params | new tokens | book loop (no cache) tok/s | generate_midi tok/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        torch.manual_seed(0)
        model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset(preset)).eval()
        params = sum(p.numel() for p in model.parameters())
        generate_ids(model, tokenizer, max_new_tokens=8, seed=0)  # warm-up
        for length in args.lengths:
            started = time.perf_counter()
            book_loop(model, tokenizer, length, seed=0)
            book = length / (time.perf_counter() - started)
            started = time.perf_counter()
            generate_ids(model, tokenizer, max_new_tokens=length, seed=0)
            ours = length / (time.perf_counter() - started)
            print(
                f"| {preset} | {params / 1e6:.1f}M | {length} | {book:,.0f} | {ours:,.0f} | {ours / book:.1f}x |",
                flush=True,
            )
    if args.seeds:
        embedded_model_table(args.seconds, args.seeds)


if __name__ == "__main__":
    main()
