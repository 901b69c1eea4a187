"""Fraction of ill-formed events in N unconstrained vs N grammar-constrained samples of a model.

    python scripts/benchmark_grammar.py [--model runs/tiny/best] [--samples 20] [--max_new_tokens 512]

Ill-formed: NOTE_OFF of a silent pitch, NOTE_ON of a sounding pitch, <pad>/<bos> inside a piece
(hf_music.generation.grammar_violations). Same seeds for both settings.
"""

from __future__ import annotations

import argparse

from hf_music.generation import generate_ids, grammar_violations
from hf_music.resources import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument("--samples", "--num", type=int, default=20, dest="samples")
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
