"""Evaluate a Music Transformer on a held-out split, with yardsticks.

    python scripts/evaluate.py --maestro_dir ../shared/data/maestro-mini              # embedded model
    python scripts/evaluate.py --model runs/maestro/best --maestro_dir maestro-v3.0.0 --samples 16 \\
        --json runs/maestro/evaluation.json

Prints validation NLL (nats/token), perplexity and next-token accuracy of the model and of
unigram and bigram models fitted on the train split, all on the same tokens (the split's
pieces concatenated and cut into blocks of the model's context, as train.py evaluates).
With --samples N it also generates N pieces and compares their pitch, pitch-class,
velocity, inter-onset-interval, duration, polyphony and note-density distributions with the
held-out pieces (overlapping area and KL, after Yang & Lerch 2020). The results are
`hf_music.run_record.Evaluation` records: --json writes them (scripts/push_to_hub.py
--evaluation reads them), --save_to_record adds them to the checkpoint's run_record.json,
from which its model card is rendered.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from hf_music.evaluation import compare_features, ngram_log_probs, score_blocks
from hf_music.generation import generate_ids
from hf_music.resources import load_model, override_tokenizer
from hf_music.run_record import (
    Evaluation,
    FeatureRow,
    RunRecord,
    SampleComparison,
    ScoreRow,
    save_evaluations,
)
from hf_music.token_pack import load_corpus
from hf_music.windows import evaluation_blocks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--maestro_dir", help="extracted MAESTRO folder (or maestro-mini)")
    data.add_argument("--maestro_zip", help="maestro-v3.0.0-midi.zip")
    data.add_argument("--midi_dir", help="any folder of MIDI files (split as train.py splits it)")
    data.add_argument("--tokens_file", help="a token pack from scripts/prepare_data.py")
    parser.add_argument(
        "--split", nargs="+", default=["validation"], choices=["validation", "test"], help="one or both"
    )
    parser.add_argument(
        "--validation_fraction", type=float, default=0.1, help="with --midi_dir, as in train.py"
    )
    parser.add_argument("--seed", type=int, default=0, help="with --midi_dir the split seed, as in train.py")
    parser.add_argument("--block_size", type=int, default=None, help="default: the model's context")
    parser.add_argument(
        "--stride", type=int, default=None,
        help="score only the last STRIDE tokens of overlapping blocks (default: contiguous blocks)",
    )  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=0, help="generate N pieces and compare statistics")
    parser.add_argument("--max_new_tokens", type=int, default=1024, help="length of each generated piece")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--tokenizer", default=None, help="a saved tokenizer folder instead of the checkpoint's own"
    )
    parser.add_argument("--json", default=None, help="write the results (Evaluation records) here")
    parser.add_argument(
        "--save_to_record", action="store_true",
        help="add the results to --model's run_record.json (a local checkpoint folder), for its model card",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.save_to_record and not (args.model and Path(args.model, "run_record.json").is_file()):
        parser.error("--save_to_record needs --model, a local checkpoint folder with a run_record.json")
    return args


def print_rows(rows: list[ScoreRow]):
    print(f"{'model':<10} {'nats/token':>11} {'bits/token':>11} {'perplexity':>11} {'accuracy':>9} "
          f"{'nats/second':>12} {'nats/note':>10}")  # fmt: skip
    for row in rows:
        # Per second and per note need the performance vocabulary's TIME_SHIFT / NOTE_ON ids (nan otherwise).
        print(
            f"{row.name:<10} {row.nats_per_token:>11.4f} {row.bits_per_token:>11.4f} {row.perplexity:>11.2f} "
            f"{row.accuracy:>9.3f} {nan_for_none(row.nats_per_second):>12.3f} {nan_for_none(row.nats_per_note):>10.3f}"
        )


def score_rows(rows: list[dict]) -> list[ScoreRow]:
    """score_blocks' rows as records (without the performance vocabulary: no per-second figures)."""
    return [
        ScoreRow(nats_per_token=row.pop("nll"), **{"nats_per_second": None, "nats_per_note": None, **row})
        for row in map(dict, rows)
    ]


def nan_for_none(value: float | None) -> float:
    return float("nan") if value is None else value


def sample_comparison(args, model, tokenizer, reference_pieces) -> SampleComparison:
    """--samples pieces generated from silence against the held-out pieces, feature by feature."""
    ids = generate_ids(
        model, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        num_return_sequences=args.samples, seed=args.seed, progress=True,
    )  # fmt: skip
    generated = [tokenizer.ids_to_notes(row) for row in ids]
    reference = [tokenizer.ids_to_notes(ids) for ids in reference_pieces]
    features = [
        FeatureRow(**{key: None if isinstance(v, float) and math.isnan(v) else v for key, v in row.items()})
        for row in compare_features(reference, generated)
    ]
    print(f"\n{args.samples} samples x {args.max_new_tokens} tokens vs the held-out pieces")
    print(f"{'feature':<24} {'OA':>6} {'KL':>7} {'held-out':>9} {'generated':>10}")
    for row in features:
        print(
            f"{row.feature:<24} {nan_for_none(row.overlap):>6.3f} {nan_for_none(row.kl):>7.3f} "
            f"{nan_for_none(row.reference_mean):>9.3f} {nan_for_none(row.generated_mean):>10.3f}"
        )
    return SampleComparison(args.samples, args.max_new_tokens, float(args.temperature), features)


def main(argv=None) -> list[Evaluation]:
    args = parse_args(argv)
    started = time.perf_counter()
    model, tokenizer = load_model(args.model, args.device)
    tokenizer = override_tokenizer(model, tokenizer, args.tokenizer)
    # Per second and per note need a clock in the ids (steps_of_id, notes_of_id): the performance events'.
    performance_ids = None if tokenizer.time_step is None else tokenizer
    pack = load_corpus(
        tokenizer, maestro=args.maestro_dir or args.maestro_zip, midi_dir=args.midi_dir,
        tokens_file=args.tokens_file, splits=("train", *args.split),
        validation_fraction=args.validation_fraction, seed=args.seed,
        test_fraction=0.1 if "test" in args.split and args.midi_dir else 0.0,
    )  # fmt: skip
    missing = [split for split in args.split if split not in pack.splits]
    if missing:
        raise SystemExit(f"the corpus has no {' or '.join(missing)} split")
    block_size = args.block_size or model.config.n_positions
    stride = args.stride or block_size
    # The yardsticks are fitted on the train split only.
    unigram, bigram = ngram_log_probs(pack.pieces("train"), len(tokenizer), tokenizer.pad_token_id)
    corpus = pack.info["corpus"]["name"]
    evaluations = []
    for split in args.split:
        pieces = pack.pieces(split)
        blocks, first = evaluation_blocks(pieces, block_size, args.stride)
        if len(blocks) == 0:
            raise SystemExit(f"the {split} split is shorter than one block of {block_size} tokens")
        rows, tokens = score_blocks(
            model, blocks, unigram, bigram, args.batch_size, first, performance_ids, progress=True
        )
        print(
            f"\n{corpus} {split}: {len(pieces)} pieces, {tokens:,} scored tokens, context {block_size}, "
            f"stride {stride}"
        )
        scores = score_rows(rows)
        print_rows(scores)
        # Samples are compared with the first split's pieces, recorded with that split.
        samples = (
            sample_comparison(args, model, tokenizer, pieces) if args.samples and not evaluations else None
        )
        evaluations.append(
            Evaluation(corpus, split, len(pieces), tokens, block_size, stride, scores, samples)
        )
    print(f"evaluated in {time.perf_counter() - started:.1f} s")
    if args.json:
        print(f"wrote {save_evaluations(evaluations, args.json)}")
    if args.save_to_record:
        RunRecord.load(args.model).with_evaluations(evaluations).save(args.model)
        print(f"added to {Path(args.model, 'run_record.json')}")
    return evaluations


if __name__ == "__main__":
    main()
