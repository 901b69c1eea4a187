"""The grammar's effect and its cost.

    python scripts/benchmark_grammar.py [--model runs/tiny/best] [--samples 20] [--max_new_tokens 512]
    python scripts/benchmark_grammar.py --speed [--threads 1] [--tokens 1024] [--repeats 3]

By default: fraction of ill-formed events in N unconstrained vs N grammar-constrained samples of a
model. Ill-formed: NOTE_OFF of a silent pitch, NOTE_ON of a sounding pitch, <pad>/<bos> inside a
piece (hf_music.generation.grammar_violations). Same seeds for both settings.

With --speed, on the embedded model (CPU, default grammar settings, from silence): microseconds per
call of PerformanceGrammarLogitsProcessor alone, replaying the states and the model's scores of a
seeded piece (token by token, as in sampling), and tokens/s of generate_ids with the lean decoder,
everything included, at batch 1 and 4. Best of --repeats (the machine may be shared).
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_music import load_default_model
from hf_music.generation import (
    GRAMMAR_DEFAULTS,
    PerformanceGrammarLogitsProcessor,
    generate_ids,
    grammar_violations,
)
from hf_music.resources import load_model


def ill_formed(args) -> None:
    model, tokenizer = load_model(args.model)
    print(
        f"{args.samples} samples x {args.max_new_tokens} tokens, temperature {args.temperature}, {args.model or 'embedded model'}\n"
    )
    print("| sampling | ill-formed events | of generated tokens | fraction |\n|---|---:|---:|---:|")
    for constrained in (False, True):
        rows = generate_ids(
            model, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            seed=0, num_return_sequences=args.samples, constrained=constrained,
        )  # fmt: skip
        bad = sum(grammar_violations(row, tokenizer) for row in rows)
        total = args.samples * args.max_new_tokens
        name = "constrained (default)" if constrained else "unconstrained"
        print(f"| {name} | {bad:,} | {total:,} | {bad / total:.2%} |")


def best_wall(function, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        walls.append(time.perf_counter() - started)
    return min(walls)


@torch.inference_mode()
def grammar_microseconds(model, tokenizer, batch: int, tokens: int, repeats: int) -> float:
    """Per call of the processor alone, on the states and scores of a seeded piece of `tokens` events."""
    ids = torch.tensor(
        generate_ids(model, tokenizer, max_new_tokens=tokens, seed=0, num_return_sequences=batch)
    )
    scores = model(ids).logits.float()  # scores[:, t]: the model's scores for the token after ids[:, : t + 1]

    def replay():
        grammar = PerformanceGrammarLogitsProcessor(
            tokenizer, history=ids[:, :1].tolist(), **GRAMMAR_DEFAULTS
        )
        for t in range(tokens):
            grammar(ids[:, : t + 1], scores[:, t])

    return best_wall(replay, repeats) / tokens * 1e6


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_default_model()
    generate_ids(model, tokenizer, max_new_tokens=8, seed=0)  # warm-up
    print(
        f"embedded model, {args.tokens} tokens from silence, {args.threads} thread(s), best of {args.repeats}\n"
    )
    print("| batch | grammar us/call | lean tokens/s |\n|---:|---:|---:|")
    for batch in (1, 4):
        micro = grammar_microseconds(model, tokenizer, batch, args.tokens, args.repeats)
        wall = best_wall(
            lambda batch=batch: generate_ids(
                model,
                tokenizer,
                max_new_tokens=args.tokens,
                seed=0,
                num_return_sequences=batch,
                backend="lean",
            ),
            args.repeats,
        )
        print(f"| {batch} | {micro:.0f} | {batch * args.tokens / wall:,.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument("--samples", "--num", type=int, default=20, dest="samples")
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--speed", action="store_true", help="time the processor and the lean sampler instead"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.speed:
        speed(args)
    else:
        ill_formed(args)


if __name__ == "__main__":
    main()
