"""Degeneration and musicality of sampled music, per sampling setting, against real performances.

    python scripts/evaluate_sampling.py --tokens_file data/maestro-v3.0.0.tokens.npz
    python scripts/evaluate_sampling.py --model runs/x/best --maestro_zip maestro-v3.0.0-midi.zip \\
        --settings temperature=0.9 "temperature=1.0,min_p=0.05" --samples 12 --json sampling.json

For each setting, N seeded samples of 20 s (from silence) get the statistics of
`hf_music.evaluation.degeneration_statistics`: notes per second, the largest share of one pitch
in any 10 s window, the longest note, polyphony p95 and max, the longest silence and the longest
run of one repeated pitch. So do random 20 s excerpts of the reference split (MAESTRO test,
decoded from its tokens, so the pedal is handled as in the samples). A sample is out of range
when a statistic lies beyond the excerpts' 99th percentile (below the 1st for notes per second);
the excerpts' own share out of range is the yardstick. The last column is the mean overlapping
area (Yang & Lerch 2020) of the samples' and the excerpts' feature distributions (1 = same).
A setting is written `name=value,...` with names of `generate_ids`: temperature, top_p, top_k,
min_p, max_silence_seconds, max_note_seconds, max_polyphony (`none` for no limit).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hf_music.evaluation import (
    compare_features,
    degeneration_statistics,
    excerpt,
    out_of_range,
    out_of_range_limits,
    reference_excerpts,
)
from hf_music.generation import generate_ids
from hf_music.resources import load_model
from hf_music.token_pack import load_corpus

DEFAULT_SETTINGS = [f"temperature={t}" for t in (0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5)] + [
    "temperature=1.0,top_p=0.95",
    "temperature=1.0,min_p=0.05",
]
SETTING_TYPES = {"top_k": int, "max_polyphony": int}


def parse_setting(text: str) -> dict:
    """`temperature=0.9,min_p=0.05` -> {"temperature": 0.9, "min_p": 0.05}."""
    setting = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        setting[name.strip()] = None if value.strip() == "none" else SETTING_TYPES.get(name, float)(value)
    return setting


def evaluate_setting(model, tokenizer, setting, args, limits, reference_notes) -> dict:
    started = time.perf_counter()
    rows = generate_ids(
        model, tokenizer, max_seconds=args.seconds, max_new_tokens=args.max_new_tokens,
        num_return_sequences=args.samples, seed=args.seed, **setting,
    )  # fmt: skip
    samples = [excerpt(tokenizer.ids_to_notes(row), 0.0, args.seconds) for row in rows]
    stats = [degeneration_statistics(notes, args.seconds) for notes in samples]
    failures = [out_of_range(s, limits) for s in stats]
    overlap = np.mean([row["overlap"] for row in compare_features(reference_notes, samples)])
    return {
        "setting": setting,
        "out_of_range": sum(bool(f) for f in failures),
        "samples": len(stats),
        "failures": dict(Counter(name for f in failures for name in f)),
        "mean_overlap": float(overlap),
        "means": {name: float(np.mean([s[name] for s in stats])) for name in stats[0]},
        "seconds": time.perf_counter() - started,
    }


def print_table(results, reference_share):
    print(
        "\n| setting | out of range | share | excerpts' share + 10 points | statistics out of range | mean OA |\n"
        "|---|---:|---:|---:|---|---:|"
    )
    for r in results:
        name = ", ".join(f"{k}={v}" for k, v in r["setting"].items())
        failures = (
            ", ".join(f"{k} {v}" for k, v in sorted(r["failures"].items(), key=lambda kv: -kv[1])) or "-"
        )
        share = r["out_of_range"] / r["samples"]
        verdict = "yes" if share <= reference_share + 0.10 else "no"
        print(
            f"| {name} | {r['out_of_range']}/{r['samples']} | {share:.0%} | {verdict} | {failures} | "
            f"{r['mean_overlap']:.3f} |"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--tokens_file", help="a token pack from scripts/prepare_data.py")
    data.add_argument("--maestro_zip", help="maestro-v3.0.0-midi.zip")
    data.add_argument("--maestro_dir", help="an extracted MAESTRO folder")
    parser.add_argument("--split", default="test", help="the reference split")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--samples", type=int, default=12, help="samples per setting")
    parser.add_argument("--excerpts", type=int, default=200, help="reference excerpts")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max_new_tokens", type=int, default=4096, help="cap per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    model, tokenizer = load_model(args.model)
    pack = load_corpus(
        tokenizer,
        maestro=args.maestro_zip or args.maestro_dir,
        tokens_file=args.tokens_file,
        splits=(args.split,),
    )
    reference_notes = reference_excerpts(
        pack.pieces(args.split), tokenizer, args.excerpts, args.seconds, args.seed
    )
    reference = [degeneration_statistics(notes, args.seconds) for notes in reference_notes]
    limits = out_of_range_limits(reference)
    reference_share = float(np.mean([bool(out_of_range(s, limits)) for s in reference]))
    print(
        f"{len(reference)} excerpts of {args.seconds:g} s from {pack.info['corpus']['name']} {args.split}: "
        f"{reference_share:.1%} out of range; limits "
        + ", ".join(
            f"{k} {'>=' if low > -np.inf else '<='} {low if low > -np.inf else high:.2f}"
            for k, (low, high) in limits.items()
        )
    )
    results = []
    for text in args.settings:
        results.append(evaluate_setting(model, tokenizer, parse_setting(text), args, limits, reference_notes))
        r = results[-1]
        print(
            f"{text}: {r['out_of_range']}/{r['samples']} out of range, OA {r['mean_overlap']:.3f} ({r['seconds']:.0f} s)",
            flush=True,
        )
    print_table(results, reference_share)
    report = {
        "model": args.model or "embedded default",
        "reference": {"corpus": pack.info["corpus"]["name"], "split": args.split, "excerpts": len(reference),
                      "seconds": args.seconds, "out_of_range_share": reference_share, "limits": limits},
        "samples_per_setting": args.samples,
        "seed": args.seed,
        "results": results,
    }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
