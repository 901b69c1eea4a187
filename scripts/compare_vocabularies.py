"""Vocabularies at equal training compute: NLL per token and per second of music, and how samples sound.

    python scripts/compare_vocabularies.py --models runs/MIDILike/best runs/TSD/best \\
        --maestro_dir ../shared/data/maestro-mini --split test --samples 24

For each checkpoint (any vocabulary: performance events or a miditok one), on the split's pieces
tokenized with the checkpoint's own tokenizer: nats per token over contiguous blocks of the
model's context, tokens per second of music (the pieces' decoded durations), so nats per second,
which compares vocabularies; then `--samples` seeded pieces of `--seconds` from silence at
temperature 1.0 (the performance grammar stays on for performance checkpoints, as in
`generate_ids`) against random excerpts of the split decoded by the same tokenizer: notes held
>= 7.9 s and >= 4 s, median pitch-class entropy, key correlation and recurring figures
(`hf_music.evaluation.musical_statistics`), and the samples out of the excerpts' range.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hf_music.evaluation import (
    degeneration_statistics,
    excerpt,
    musicality_summary,
    ngram_log_probs,
    out_of_range,
    out_of_range_limits,
    reference_excerpts,
    score_blocks,
)
from hf_music.generation import generate_ids
from hf_music.resources import load_model
from hf_music.token_pack import load_corpus
from hf_music.windows import evaluation_blocks


def piece_seconds(tokenizer, ids) -> float:
    """Seconds of music in a piece: miditok decodes it, performance events add their TIME_SHIFTs."""
    if hasattr(tokenizer, "steps_of_id"):
        return float(tokenizer.steps_of_id[np.asarray(ids)].sum() * tokenizer.time_step)
    return float(tokenizer.seconds(ids))


def summary(pieces, seconds: float) -> dict:
    """`musicality_summary` without the per-window statistics."""
    return {k: v for k, v in musicality_summary(pieces, seconds).items() if k != "windows"}


def compare(model_path: str, args) -> dict:
    model, tokenizer = load_model(model_path)
    pieces = load_corpus(tokenizer, maestro=args.maestro_dir, splits=(args.split,)).pieces(args.split)
    blocks, first = evaluation_blocks(pieces, model.config.n_positions)
    unigram, bigram = ngram_log_probs(pieces, len(tokenizer), tokenizer.pad_token_id)  # not reported
    rows, scored = score_blocks(model, blocks, unigram, bigram, 16, first, None)
    tokens = sum(len(piece) for piece in pieces)
    seconds = sum(piece_seconds(tokenizer, piece) for piece in pieces)
    reference = reference_excerpts(pieces, tokenizer, args.excerpts, args.seconds, args.seed)
    limits = out_of_range_limits([degeneration_statistics(n, args.seconds) for n in reference])
    rows_of_ids = generate_ids(
        model, tokenizer, max_seconds=args.seconds, max_new_tokens=int(args.seconds * 100),
        num_return_sequences=args.samples, seed=args.seed, temperature=1.0, pitch_temperature=1.0,
    )  # fmt: skip
    samples = [excerpt(tokenizer.ids_to_notes(ids), 0.0, args.seconds) for ids in rows_of_ids]
    failures = [out_of_range(degeneration_statistics(n, args.seconds), limits) for n in samples]
    return {
        "model": model_path,
        "vocabulary": getattr(tokenizer, "vocabulary_name", "performance events"),
        "ids": len(tokenizer),
        "scored_tokens": scored,
        "nats_per_token": rows[0]["nll"],
        "tokens_per_second": tokens / seconds,
        "nats_per_second": rows[0]["nll"] * tokens / seconds,
        "samples_out_of_range": sum(map(bool, failures)),
        "samples": summary(samples, args.seconds),
        "reference": summary(reference, args.seconds),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", required=True, help="checkpoint folders")
    parser.add_argument("--maestro_dir", required=True, help="a MAESTRO folder (or maestro-mini)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--excerpts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = [compare(path, args) for path in args.models]
    print(
        "\n| model | vocabulary | ids | nats/token | tokens/second | nats/second | samples out of range | "
        "notes >= 7.9 s | notes >= 4 s | pitch-class entropy | key correlation | recurring figures |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in results:
        s, m = r["samples"], r["samples"]["medians"]
        print(
            f"| {r['model']} | {r['vocabulary']} | {r['ids']} | {r['nats_per_token']:.3f} | "
            f"{r['tokens_per_second']:.1f} | {r['nats_per_second']:.2f} | {r['samples_out_of_range']}/{args.samples} | "
            f"{s['held_7_9s_share']:.2%} | {s['held_4s_share']:.2%} | {m['pitch_class_entropy']:.2f} | "
            f"{m['key_correlation']:.2f} | {m['recurring_figure_share']:.2f} |"
        )
    reference = results[0]["reference"]
    print(
        f"\nexcerpts of the {args.split} split ({results[0]['vocabulary']}): {reference['held_7_9s_share']:.2%} "
        f"held >= 7.9 s, {reference['held_4s_share']:.2%} >= 4 s, pitch-class entropy "
        f"{reference['medians']['pitch_class_entropy']:.2f}, key correlation "
        f"{reference['medians']['key_correlation']:.2f}, recurring figures "
        f"{reference['medians']['recurring_figure_share']:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
