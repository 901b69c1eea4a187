"""Degeneration and musicality of sampled music, per sampling setting, against real performances.

    python scripts/evaluate_sampling.py --tokens_file data/maestro-v3.0.0.tokens.npz
    python scripts/evaluate_sampling.py --tokens_file data/maestro-v3.0.0.tokens.npz --settings default \
        --samples 24 --long_samples 6 --long_seconds 120
    python scripts/evaluate_sampling.py --model runs/x/best --maestro_zip maestro-v3.0.0-midi.zip \\
        --settings temperature=0.9 "temperature=1.0,min_p=0.05" --samples 12 --json sampling.json

For each setting, N seeded samples of 20 s (from silence) get the statistics of
`hf_music.evaluation.degeneration_statistics`: notes per second, the largest share of one pitch
in any 10 s window, the longest note, polyphony p95 and max, the longest silence and the longest
run of one repeated pitch. So do random 20 s excerpts of the reference split (MAESTRO test,
decoded from its tokens, so the pedal is handled as in the samples). A sample is out of range
when a statistic lies beyond the excerpts' 99th percentile (below the 1st for notes per second);
the excerpts' own share out of range is the yardstick. Mean OA is the overlapping area (Yang &
Lerch 2020) of the samples' and the excerpts' feature distributions (1 = same).
What a listener hears is measured beside it (`hf_music.evaluation.musical_statistics`, per 20 s
window, samples and excerpts alike): the share of notes held >= 7.9 s and >= 4 s (pooled), the
median pitch-class entropy (no key: all twelve used), the median Krumhansl-Schmuckler key
correlation, the median share of recurring figures (phrases), and the mean OA of those statistics.
With --long_samples, pieces of --long_seconds are cut into 20 s windows and the same statistics
are given per window: drift past the model's context.
A setting is written `name=value,...` with names of `generate_ids`: temperature, pitch_temperature,
top_p, top_k, min_p, max_silence_seconds, max_note_seconds, soft_note_seconds, max_polyphony
(`none` for no limit); `default` is the checkpoint's own generation_config.
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
    musicality_summary,
    out_of_range,
    out_of_range_limits,
    reference_excerpts,
    windows_of,
)
from hf_music.generation import generate_ids
from hf_music.resources import load_model
from hf_music.token_pack import load_corpus

# The Space's slider (pitch temperature) across its range, the default, and what sampling was before
# the soft rules (plain temperature, hard limits only).
BEFORE = "pitch_temperature=1.0,soft_note_seconds=none,repeat_penalty=none"
DEFAULT_SETTINGS = [f"pitch_temperature={t}" for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5)] + [
    "default",
    BEFORE,
    f"temperature=0.7,{BEFORE}",
]
SETTING_TYPES = {"top_k": int, "max_polyphony": int}


def parse_setting(text: str) -> dict:
    """`temperature=0.9,min_p=0.05` -> {"temperature": 0.9, "min_p": 0.05}; `default` -> {}."""
    setting = {}
    for item in [] if text == "default" else text.split(","):
        name, _, value = item.partition("=")
        setting[name.strip()] = None if value.strip() == "none" else SETTING_TYPES.get(name, float)(value)
    return setting


def sample_notes(model, tokenizer, setting, args, count: int, seconds: float):
    # The token cap must not end a long piece early: dense piano needs up to ~100 events a second.
    cap = max(args.max_new_tokens, int(seconds * 100))
    rows = generate_ids(
        model, tokenizer, max_seconds=seconds, max_new_tokens=cap,
        num_return_sequences=count, seed=args.seed, **setting,
    )  # fmt: skip
    return [excerpt(tokenizer.ids_to_notes(row), 0.0, seconds) for row in rows]


def evaluate_setting(model, tokenizer, setting, args, limits, reference_notes, reference_windows) -> dict:
    started = time.perf_counter()
    samples = sample_notes(model, tokenizer, setting, args, args.samples, args.seconds)
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
        "musicality": musicality_summary(samples, args.seconds, reference_windows),
        "seconds": time.perf_counter() - started,
    }


def evaluate_long_pieces(model, tokenizer, setting, args, limits, reference_windows) -> dict:
    """Pieces of --long_seconds cut into windows of --seconds: the statistics of each window index."""
    started = time.perf_counter()
    pieces = sample_notes(model, tokenizer, setting, args, args.long_samples, args.long_seconds)
    windows = [windows_of(notes, args.long_seconds, args.seconds) for notes in pieces]
    by_index = []
    for k in range(min(len(w) for w in windows)):
        column = [w[k] for w in windows]
        failures = [out_of_range(degeneration_statistics(n, args.seconds), limits) for n in column]
        summary = musicality_summary(column, args.seconds, reference_windows)
        summary.pop("windows")
        by_index.append({
            "start_s": k * args.seconds, "seconds": args.seconds, "out_of_range": sum(map(bool, failures)),
            "failures": dict(Counter(name for f in failures for name in f)), **summary,
        })  # fmt: skip
    every = [window for w in windows for window in w]
    failures = [out_of_range(degeneration_statistics(n, args.seconds), limits) for n in every]
    return {
        "setting": setting,
        "pieces": len(pieces),
        "seconds_each": args.long_seconds,
        "windows": len(every),
        "out_of_range": sum(map(bool, failures)),
        "musicality": {
            k: v
            for k, v in musicality_summary(every, args.seconds, reference_windows).items()
            if k != "windows"
        },
        "by_window": by_index,
        "seconds": time.perf_counter() - started,
    }


def setting_name(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "default"


def print_table(results, reference_share, reference_music):
    print(
        "\n| setting | out of range | within excerpts' share + 10 points | statistics out of range | "
        "notes >= 7.9 s | notes >= 4 s | pitch-class entropy (bits) | key correlation | recurring figures | "
        "mean OA (features) | mean OA (musical) |\n|---|---:|:---:|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    m = reference_music["medians"]
    print(
        f"| MAESTRO test excerpts | {reference_share:.0%} | - | - | {reference_music['held_7_9s_share']:.2%} | "
        f"{reference_music['held_4s_share']:.2%} | {m['pitch_class_entropy']:.2f} | {m['key_correlation']:.2f} | "
        f"{m['recurring_figure_share']:.2f} | 1 | 1 |"
    )
    for r in results:
        failures = (
            ", ".join(f"{k} {v}" for k, v in sorted(r["failures"].items(), key=lambda kv: -kv[1])) or "-"
        )
        share = r["out_of_range"] / r["samples"]
        verdict = "yes" if share <= reference_share + 0.10 else "no"
        music, m = r["musicality"], r["musicality"]["medians"]
        print(
            f"| {setting_name(r['setting'])} | {r['out_of_range']}/{r['samples']} | {verdict} | {failures} | "
            f"{music['held_7_9s_share']:.2%} | {music['held_4s_share']:.2%} | {m['pitch_class_entropy']:.2f} | "
            f"{m['key_correlation']:.2f} | {m['recurring_figure_share']:.2f} | {r['mean_overlap']:.3f} | "
            f"{music['mean_musical_overlap']:.3f} |"
        )


def print_long_table(long):
    print(
        f"\n{long['pieces']} pieces of {long['seconds_each']:g} s ({setting_name(long['setting'])}): "
        f"{long['out_of_range']}/{long['windows']} windows out of range, "
        f"{long['musicality']['held_7_9s_share']:.2%} of notes held >= 7.9 s\n"
        "| window | out of range | notes >= 7.9 s | pitch-class entropy | key correlation | recurring figures | "
        "mean OA (musical) |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for w in long["by_window"]:
        m = w["medians"]
        print(
            f"| {w['start_s']:g}-{w['start_s'] + w['seconds']:g} s | {w['out_of_range']}/{long['pieces']} | "
            f"{w['held_7_9s_share']:.2%} | {m['pitch_class_entropy']:.2f} | {m['key_correlation']:.2f} | "
            f"{m['recurring_figure_share']:.2f} | {w['mean_musical_overlap']:.3f} |"
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
    parser.add_argument(
        "--max_new_tokens", type=int, default=4096, help="cap per sample (at least 100 per second of music)"
    )
    parser.add_argument("--long_samples", type=int, default=0, help="pieces of --long_seconds (drift)")
    parser.add_argument("--long_seconds", type=float, default=120.0)
    parser.add_argument("--long_setting", default="default", help="the setting of the long pieces")
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
    reference_music = musicality_summary(reference_notes, args.seconds)
    reference_windows = reference_music.pop("windows")
    results = []
    for text in args.settings:
        setting = parse_setting(text)
        results.append(
            evaluate_setting(model, tokenizer, setting, args, limits, reference_notes, reference_windows)
        )
        r = results[-1]
        print(
            f"{text}: {r['out_of_range']}/{r['samples']} out of range, OA {r['mean_overlap']:.3f}, "
            f"held >= 7.9 s {r['musicality']['held_7_9s_share']:.2%} ({r['seconds']:.0f} s)",
            flush=True,
        )
    print_table(results, reference_share, reference_music)
    long = None
    if args.long_samples:
        setting = parse_setting(args.long_setting)
        long = evaluate_long_pieces(model, tokenizer, setting, args, limits, reference_windows)
        print_long_table(long)
    report = {
        "model": args.model or "embedded default",
        "reference": {"corpus": pack.info["corpus"]["name"], "split": args.split, "excerpts": len(reference),
                      "seconds": args.seconds, "out_of_range_share": reference_share, "limits": limits,
                      "musicality": reference_music},
        "samples_per_setting": args.samples,
        "seed": args.seed,
        "results": results,
        "long_pieces": long,
    }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
