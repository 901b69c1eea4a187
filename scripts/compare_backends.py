"""Do the sampling backends give the same music? NLL of real music and statistics of samples, per backend.

    python scripts/compare_backends.py --tokens_file data/maestro-v3.0.0.tokens.npz [--blocks 40]
        [--samples 24] [--seconds 20]

1. Next-event NLL (nats/event) of --blocks random blocks of 1,024 events of MAESTRO's test split,
   from the logits each backend samples from: the PyTorch model (what "lean" and "transformers"
   compute, up to rounding), the onnxruntime graph in float32 ("onnx") and with int8 matrix
   products ("onnx-int8").
2. --samples seeded pieces of --seconds from silence per backend (the checkpoint's sampling
   settings): the NLL of the sampled events under the float32 PyTorch model (mean and standard
   error over pieces: samples from the same distribution score alike), notes per second, longest
   note, and the median musical statistics of `hf_music.evaluation.musical_statistics`, with the
   overlapping area of each backend's statistics against "lean"'s (1 = same distribution; the
   last row, lean from other seeds, shows how far chance alone moves each column).
The seeds are the same for all backends; only lean and transformers give the same ids for them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hf_music.evaluation import (
    MUSICAL_STATISTICS,
    degeneration_statistics,
    excerpt,
    musical_statistics,
    next_token_log_probs,
    overlap_of_statistics,
)
from hf_music.generation import BACKENDS, generate_ids
from hf_music.onnx_decoding import graph_session
from hf_music.resources import load_model
from hf_music.token_pack import load_corpus

BLOCK = 1024
CONTROL_SEEDS = 1000  # the last row: lean again from these seeds on, what chance alone moves
LOGITS = {"pytorch (lean, transformers)": None, "onnx": "float32", "onnx-int8": "int8"}


def test_blocks(tokenizer, tokens_file: str, count: int, seed: int) -> torch.Tensor:
    """``count`` random blocks of BLOCK events of MAESTRO test, each inside one piece."""
    pack = load_corpus(tokenizer, tokens_file=tokens_file, splits=("test",))
    pieces = [piece for piece in pack.pieces("test") if len(piece) > BLOCK]
    rng = np.random.default_rng(seed)
    blocks = []
    for index in rng.integers(len(pieces), size=count):
        start = rng.integers(len(pieces[index]) - BLOCK + 1)
        blocks.append(np.asarray(pieces[index][start : start + BLOCK], np.int64))
    return torch.from_numpy(np.stack(blocks))


def graph_log_probs(model, blocks: torch.Tensor, weights: str) -> torch.Tensor:
    """log P(event j+1 | events <= j) of each block by the onnxruntime graph, [blocks, BLOCK - 1]."""
    session = graph_session(model, weights, last_only=False)
    config = model.config
    cache = np.zeros((1, config.n_head, BLOCK, config.n_embd // config.n_head), np.float32)
    out = []
    for block in blocks:
        feeds = {
            "input_ids": block[None].numpy(),
            "position_ids": np.arange(BLOCK, dtype=np.int64),
            "seqlens_k": np.array([BLOCK - 1], np.int32),
            "total_length": np.array(BLOCK, np.int32),
        }
        feeds.update({f"past_{kind}_{i}": cache for i in range(config.n_layer) for kind in ("key", "value")})
        logits = torch.from_numpy(session.run(["logits"], feeds)[0])[:, :-1]
        out.append(logits.log_softmax(-1).gather(-1, block[None, 1:, None])[..., 0])
    return torch.cat(out)


def nll_table(model, blocks: torch.Tensor) -> None:
    print(f"| logits of | NLL nats/event ({len(blocks)} blocks of {BLOCK} of MAESTRO test) | change |")
    print("|---|---:|---:|")
    with torch.inference_mode():
        exact = -next_token_log_probs(model, blocks)[0].mean().item()
    for name, weights in LOGITS.items():
        nll = exact if weights is None else -graph_log_probs(model, blocks, weights).mean().item()
        print(f"| {name} | {nll:.4f} | {nll - exact:+.4f} |", flush=True)


def sampled(model, tokenizer, backend: str, args, seed: int) -> tuple[list, float]:
    """The pieces and their wall time (after a warm-up call that builds an onnxruntime session)."""
    generate_ids(model, tokenizer, max_new_tokens=2, seed=0, backend=backend)
    started = time.perf_counter()
    rows = generate_ids(
        model, tokenizer, max_seconds=args.seconds, max_new_tokens=int(args.seconds * 100),
        num_return_sequences=args.samples, seed=seed, backend=backend,
    )  # fmt: skip
    return rows, time.perf_counter() - started


@torch.inference_mode()
def sample_nll(model, rows) -> np.ndarray:
    """Per piece, the mean NLL of its events under the model (each piece fits the context)."""
    return np.array([-next_token_log_probs(model, torch.tensor([row]))[0].mean().item() for row in rows])


def sample_table(model, tokenizer, args) -> None:
    names = ("notes_per_second", "longest_note_s")
    print(
        f"\n| backend | wall s | sample NLL (mean ± s.e.) | {' | '.join(names + MUSICAL_STATISTICS)} | OA vs lean |"
    )
    print("|---|---:|---:|" + "---:|" * (len(names) + len(MUSICAL_STATISTICS)) + "---:|")
    reference = None
    runs = [(b, args.seed) for b in BACKENDS if b != "auto"] + [("lean", args.seed + CONTROL_SEEDS)]
    for backend, seed in runs:
        rows, wall = sampled(model, tokenizer, backend, args, seed)
        nll = sample_nll(model, rows)
        notes = [excerpt(tokenizer.ids_to_notes(row), 0.0, args.seconds) for row in rows]
        degeneration = [degeneration_statistics(n, args.seconds) for n in notes]
        musical = [musical_statistics(n, args.seconds) for n in notes]
        reference = musical if reference is None else reference
        overlap = np.mean(list(overlap_of_statistics(reference, musical).values()))
        cells = [f"{np.mean([d[name] for d in degeneration]):.2f}" for name in names]
        cells += [f"{np.median([m[name] for m in musical]):.3f}" for name in MUSICAL_STATISTICS]
        error = nll.std(ddof=1) / np.sqrt(len(nll))
        name = backend if seed == args.seed else f"{backend}, other seeds"
        print(f"| {name} | {wall:.1f} | {nll.mean():.3f} ± {error:.3f} | {' | '.join(cells)} | {overlap:.2f} |",
              flush=True)  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokens_file", required=True, help="a token pack with a test split (scripts/prepare_data.py)"
    )
    parser.add_argument(
        "--model", default=None, help="a checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, tokenizer = load_model(args.model)
    model.eval()
    if args.blocks:
        nll_table(model, test_blocks(tokenizer, args.tokens_file, args.blocks, args.seed))
    if args.samples:
        sample_table(model, tokenizer, args)


if __name__ == "__main__":
    main()
