"""BPE over performance events against the base vocabulary: the BPE tables in docs/results.md.

    python scripts/benchmark_bpe.py --tokens_file data/maestro-v3.0.0.tokens.npz \\
        --vocab_sizes 1000 4000 16000 --models runs/base/best runs/bpe1000/best runs/bpe4000/best

Merges are learned on the train split with 🤗 tokenizers' BPE trainer (`MidiTokenizer.train_bpe`,
words end after each TIME_SHIFT); tokens per second of music are those of the test split. Each
trained model (`scripts/train.py`, `--bpe_vocab_size N` for BPE, the same preset, block and batch)
gets: its training FLOPs (`hf_music.flops`, steps x tokens per step), its test NLL per token and per
second of music from its run record (`scripts/evaluate.py --split test --save_to_record` first),
the wall time of 20 s of music at batch 1 with the grammar (median over --seeds, this CPU), the
tokens that took, and the share of its 20 s samples (temperature 1.0, from silence) with a
degeneration statistic beyond the test excerpts' 1st-99th percentiles (`scripts/evaluate_sampling.py`'s
rule; the excerpts' own share is printed as the yardstick).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hf_music import MidiTokenizer, generate_ids, load_model
from hf_music.evaluation import (
    degeneration_statistics,
    excerpt,
    out_of_range,
    out_of_range_limits,
    reference_excerpts,
)
from hf_music.flops import training_flops_per_token
from hf_music.run_record import RunRecord
from hf_music.token_pack import TokenPack, merged_pack


def compression_rows(pack: TokenPack, vocab_sizes: list[int]) -> None:
    """Tokens per second of music on the test split, for the base vocabulary and each BPE size."""
    base = MidiTokenizer()
    seconds = pack.info["seconds"]["test"]
    print("| vocabulary | ids | test tokens | tokens per second of music | vs base | merges learned in |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| base | {base.vocab_size} | {pack.tokens['test'].size:,} | {pack.tokens['test'].size / seconds:.1f} | 1.00 | - |"
    )
    for size in vocab_sizes:
        started = time.perf_counter()
        bpe = base.train_bpe(pack.pieces("train"), size)
        learned = time.perf_counter() - started
        tokens = merged_pack(
            TokenPack({"test": pack.tokens["test"]}, {"test": pack.offsets["test"]}, pack.info), bpe
        )
        count = tokens.tokens["test"].size
        print(
            f"| BPE | {size} | {count:,} | {count / seconds:.1f} | {count / pack.tokens['test'].size:.2f} | "
            f"{learned:.0f} s |",
            flush=True,
        )


def scores_on_test(folder: str) -> tuple[str, str]:
    """nats/token and nats/second of music on the test split, from the checkpoint's run record."""
    record = RunRecord.load(folder)
    test = [e for e in record.evaluations if e.split == "test"]
    if not test:
        return "-", "-"
    model = test[-1].model
    return f"{model.nats_per_token:.3f}", f"{model.nats_per_second:.2f}"


def generation_time(model, tokenizer, seeds: list[int], seconds: float) -> tuple[float, float]:
    """Median wall time and tokens of `seconds` of music, batch 1, grammar on."""
    generate_ids(model, tokenizer, max_new_tokens=8, seed=0)  # warm-up
    walls, tokens = [], []
    for seed in seeds:
        started = time.perf_counter()
        (row,) = generate_ids(model, tokenizer, max_seconds=seconds, max_new_tokens=4096, seed=seed)
        walls.append(time.perf_counter() - started)
        tokens.append(len(row) - 1)
    return float(np.median(walls)), float(np.median(tokens))


def degeneration_share(model, tokenizer, limits, samples: int, seconds: float) -> float:
    rows = generate_ids(
        model, tokenizer, max_seconds=seconds, max_new_tokens=4096, num_return_sequences=samples, seed=0
    )
    stats = [degeneration_statistics(excerpt(tokenizer.ids_to_notes(r), 0.0, seconds), seconds) for r in rows]
    return float(np.mean([bool(out_of_range(s, limits)) for s in stats]))


def model_rows(pack: TokenPack, folders: list[str], args) -> None:
    base = MidiTokenizer()
    reference = [
        degeneration_statistics(notes, args.seconds)
        for notes in reference_excerpts(pack.pieces("test"), base, args.excerpts, args.seconds, 0)
    ]
    limits = out_of_range_limits(reference)
    yardstick = np.mean([bool(out_of_range(s, limits)) for s in reference])
    print(
        f"\n{len(reference)} test excerpts of {args.seconds:g} s: {yardstick:.0%} out of range (the yardstick)\n"
    )
    print(
        f"| model | ids | training TFLOPs | test nats/token | test nats/second | {args.seconds:g} s of music: "
        f"wall s | tokens | samples out of range |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder in folders:
        model, tokenizer = load_model(folder)
        record = RunRecord.load(folder)
        flops = training_flops_per_token(model.config, record.model.context) * (
            record.training.completed_steps * record.training.tokens_per_step
        )
        per_token, per_second = scores_on_test(folder)
        wall, tokens = generation_time(model, tokenizer, args.seeds, args.seconds)
        share = degeneration_share(model, tokenizer, limits, args.samples, args.seconds)
        print(
            f"| {folder} | {len(tokenizer)} | {flops / 1e12:.1f} | {per_token} | {per_second} | {wall:.2f} | "
            f"{tokens:.0f} | {share:.0%} |",
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens_file", required=True, help="a MAESTRO token pack of the base vocabulary")
    parser.add_argument("--vocab_sizes", nargs="*", type=int, default=[1000, 4000, 16000])
    parser.add_argument("--models", nargs="*", default=[], help="checkpoint folders to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--samples", type=int, default=12, help="samples per model for the degeneration share"
    )
    parser.add_argument("--excerpts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pack = TokenPack.load(args.tokens_file)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {pack.info['corpus']['name']}\n"
    )
    if args.vocab_sizes:
        compression_rows(pack, args.vocab_sizes)
    if args.models:
        model_rows(pack, args.models, args)


if __name__ == "__main__":
    main()
