"""Tokens/s of generate_ids with the lean decoder (hf_music.decoding), onnxruntime's step (backend
"onnx" and "onnx-int8": hf_music.onnx_decoding), model.generate (backend="transformers") and the
book's loop (a full forward pass per token, no cache), CPU.

    python scripts/benchmark_decoder.py [--tokens 1024] [--batch 4] [--seconds 20 120] [--threads N]

Rows: per model (the embedded default model and a randomly initialised tiny preset: speed does not
depend on the weights) and backend, batch 1 and batch N (N pieces at once, as the CLI's --samples),
from silence with the grammar on (what users get); then the default model's mean wall time for 20 s and
120 s of music over --music_seeds pieces (max_seconds, batch 1; past the context every backend
re-primes, see hf_music.decoding.reprime_length). tokens/s counts the new tokens of all rows, best of --repeats
runs (the machine may be shared); the book loop (slow: it grows with the square of the length)
and each music piece run once.
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

BACKENDS = ("lean", "onnx", "onnx-int8", "transformers")  # those of generate_ids but "auto" (= lean)


@torch.inference_mode()
def book_loop(model, tokenizer, max_new_tokens: int, seed: int) -> None:
    """The sampling loop of the book's chapter 14: full forward pass at every step."""
    torch.manual_seed(seed)
    ids = torch.tensor([[tokenizer.bos_token_id]])
    context = model.config.n_positions
    for _ in range(max_new_tokens):
        logits = model(ids[:, -context:], use_cache=False).logits[:, -1, :]
        next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1)
        ids = torch.cat([ids, next_id], dim=1)


def timed(function, *args, repeats: int = 1, **kwargs):
    """The result and the shortest wall time of `repeats` calls (others share this machine)."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        walls.append(time.perf_counter() - started)
    return result, min(walls)


def speed_rows(name, model, tokenizer, args):
    """(model, backend, batch, new tokens, wall s, tokens/s) rows: book loop, then each backend."""
    book_tokens = args.book_tokens or args.tokens
    _, wall = timed(book_loop, model, tokenizer, book_tokens, args.seed)  # long: once
    rows = [(name, "book loop", 1, book_tokens, wall, book_tokens / wall)]
    for backend in BACKENDS:
        _, wall = timed(generate_ids, model, tokenizer, max_new_tokens=8, seed=0, backend=backend)
        print(f"<!-- {name} {backend}: first call {wall:.2f} s (an onnx session is built once per model) -->")
        for batch in (1, args.batch):
            out, wall = timed(
                generate_ids, model, tokenizer, max_new_tokens=args.tokens, seed=args.seed,
                num_return_sequences=batch, backend=backend, repeats=args.repeats,
            )  # fmt: skip
            new = sum(len(row) - 1 for row in out)
            rows.append((name, backend, batch, new, wall, new / wall))
    return rows


def music_rows(model, tokenizer, args):
    """(seconds asked, backend, events, seconds of music, wall s, events/s) for the default model at
    batch 1, means over --music_seeds pieces: backends that sample other ids (onnx-int8) make other
    pieces, and a piece's density (events per second of music) sets its cost."""
    rows = []
    for seconds in args.seconds:
        for backend in BACKENDS:
            events = music = wall = 0.0
            for seed in range(args.seed, args.seed + args.music_seeds):
                (row,), took = timed(
                    generate_ids, model, tokenizer, max_seconds=seconds, max_new_tokens=int(100 * seconds) + 64,
                    seed=seed, backend=backend,
                )  # fmt: skip
                events += len(row) - 1
                music += float(time_steps(torch.tensor(row), tokenizer)) * tokenizer.time_step
                wall += took
            count = args.music_seeds
            rows.append((seconds, backend, events / count, music / count, wall / count, events / wall))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024, help="new tokens per row for tokens/s")
    parser.add_argument("--batch", type=int, default=4, help="rows of the batched run")
    parser.add_argument(
        "--book_tokens", type=int, default=None, help="new tokens of the book loop (default: --tokens)"
    )
    parser.add_argument("--seconds", nargs="*", type=float, default=[20.0, 120.0], help="none: skip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--music_seeds", type=int, default=3, help="pieces per music row (seeds from --seed)")
    parser.add_argument("--repeats", type=int, default=3, help="tokens/s rows: best of this many runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    default_model, tokenizer = load_default_model()
    torch.manual_seed(0)
    tiny = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny")).eval()
    print("| model | backend | batch | new tokens | wall s | tokens/s | x book loop |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, model in (("default", default_model), ("tiny", tiny)):
        rows = speed_rows(name, model, MidiTokenizer(), args)
        book = rows[0][-1]
        for model_name, backend, batch, new, wall, speed in rows:
            print(
                f"| {model_name} | {backend} | {batch} | {new} | {wall:.2f} | {speed:,.0f} | {speed / book:.1f}x |",
                flush=True,
            )
    if args.seconds:
        print(
            f"\n| music asked | backend | events (mean of {args.music_seeds}) | seconds of music | wall s | events/s |"
        )
        print("|---:|---|---:|---:|---:|---:|")
        for seconds, backend, events, music, wall, rate in music_rows(default_model, tokenizer, args):
            print(
                f"| {seconds:g} s | {backend} | {events:,.0f} | {music:.1f} | {wall:.2f} | {rate:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
