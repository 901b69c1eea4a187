"""How good is a model: likelihood against n-gram yardsticks, and statistics of its music.

- `ngram_log_probs` fits unigram and bigram models on training ids; `score_blocks` gives
  NLL (nats/token) and next-token accuracy of the model and of both baselines on exactly
  the same target tokens.
- `music_features` / `compare_features` measure generated pieces against held-out ones in
  the spirit of Yang & Lerch (2020, "On the evaluation of generative models in music"): for
  each feature, the overlapping area (OA, 1 = identical) and the KL divergence (0 = identical)
  of the two sets' distributions on shared bins.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .tokenization_music_transformer import PerformanceNotes

# Dirichlet smoothing of the bigram towards the unigram: how many pseudo-counts the unigram gets.
BIGRAM_PRIOR = 1.0


def ngram_log_probs(sequences, vocab_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(unigram [V], bigram [V, V]) natural-log probabilities fitted on id sequences.

    Unigram: add-one counts of every target (ids after the first of each sequence). Bigram:
    P(b | a) = (c(a, b) + BIGRAM_PRIOR * P(b)) / (c(a) + BIGRAM_PRIOR), so unseen pairs fall
    back on the unigram instead of getting zero.
    """
    unigram = np.ones(vocab_size)
    pairs = np.zeros((vocab_size, vocab_size))
    for ids in sequences:
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[ids != pad_id]
        unigram += np.bincount(ids[1:], minlength=vocab_size)
        np.add.at(pairs, (ids[:-1], ids[1:]), 1)
    unigram[pad_id] = 0
    p_unigram = unigram / unigram.sum()
    p_bigram = (pairs + BIGRAM_PRIOR * p_unigram) / (pairs.sum(axis=1, keepdims=True) + BIGRAM_PRIOR)
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.log(p_unigram)), torch.from_numpy(np.log(p_bigram))


@torch.inference_mode()
def score_blocks(
    model, blocks: torch.Tensor, unigram: torch.Tensor, bigram: torch.Tensor, batch_size: int = 8
):
    """NLL (nats/token), perplexity and accuracy of the model, the bigram and the unigram.

    `blocks` is [N, L] ids without padding; every position after the first of a block is a target.
    """
    device = next(model.parameters()).device
    model.eval()
    totals = {name: {"nll": 0.0, "correct": 0} for name in ("model", "bigram", "unigram")}
    count = 0
    best_unigram = int(unigram.argmax())
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].long()
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(input_ids=inputs.to(device)).logits.float()
        log_probs = torch.log_softmax(logits, dim=-1).cpu()
        totals["model"]["nll"] -= log_probs.gather(-1, targets[..., None]).sum().item()
        totals["model"]["correct"] += (log_probs.argmax(-1) == targets).sum().item()
        totals["bigram"]["nll"] -= bigram[inputs, targets].sum().item()
        totals["bigram"]["correct"] += (bigram[inputs].argmax(-1) == targets).sum().item()
        totals["unigram"]["nll"] -= unigram[targets].sum().item()
        totals["unigram"]["correct"] += (targets == best_unigram).sum().item()
        count += targets.numel()
    rows = []
    for name, total in totals.items():
        nll = total["nll"] / count
        rows.append(
            {"name": name, "nll": nll, "perplexity": math.exp(nll), "accuracy": total["correct"] / count}
        )
    return rows, count


# Feature -> bins shared by both sets (values outside are clipped into the end bins).
FEATURE_BINS = {
    "pitch": np.arange(20.5, 109.5, 1.0),
    "pitch_class": np.arange(-0.5, 12.5, 1.0),
    "velocity": np.linspace(0, 128, 17),
    "inter_onset_interval_s": np.concatenate([[0.0], np.geomspace(0.01, 2.0, 24)]),
    "duration_s": np.concatenate([[0.0], np.geomspace(0.01, 4.0, 24)]),
    "polyphony": np.arange(0.5, 17.5, 1.0),
    "notes_per_second": np.linspace(0, 40, 21),
}


def music_features(notes: PerformanceNotes, window_seconds: float = 5.0) -> dict[str, np.ndarray]:
    """Per-note (pitch, pitch class, velocity, IOI, duration, polyphony at onset) and per-window
    (notes per second) values of one piece."""
    onset = np.asarray(notes.onset, dtype=np.float64)
    order = np.argsort(onset, kind="stable")
    onset, offset = onset[order], np.asarray(notes.offset, dtype=np.float64)[order]
    pitch, velocity = np.asarray(notes.pitch)[order], np.asarray(notes.velocity)[order]
    # Notes sounding when each note starts (itself included): started so far minus ended so far.
    ended = np.searchsorted(np.sort(offset), onset, side="right")
    polyphony = np.arange(1, len(onset) + 1) - ended
    iois = np.diff(np.unique(onset))
    end = offset.max(initial=0.0)
    windows = max(1, int(end // window_seconds))
    counts = np.bincount(np.minimum(onset // window_seconds, windows - 1).astype(int), minlength=windows)
    lengths = np.full(windows, window_seconds)
    lengths[-1] = max(end - (windows - 1) * window_seconds, 1e-9)  # the last window takes the remainder
    return {
        "pitch": pitch.astype(float),
        "pitch_class": (pitch % 12).astype(float),
        "velocity": velocity.astype(float),
        "inter_onset_interval_s": iois,
        "duration_s": offset - onset,
        "polyphony": polyphony.astype(float),
        "notes_per_second": counts / lengths,
    }


def overlap_and_kl(reference: np.ndarray, generated: np.ndarray, bins: np.ndarray) -> tuple[float, float]:
    """Overlapping area and KL(reference || generated) of two samples' histograms on `bins`."""

    def histogram(values):
        counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)
        return counts / max(counts.sum(), 1)

    p, q = histogram(reference), histogram(generated)
    eps = 1e-6  # a bin the generated set never fills must not make KL infinite
    kl = float(np.sum(p * np.log((p + eps) / (q + eps))))
    return float(np.minimum(p, q).sum()), kl


def compare_features(reference: list[PerformanceNotes], generated: list[PerformanceNotes]) -> list[dict]:
    """One row per feature: OA, KL and both means, pooling the values of each set's pieces."""
    ref = [music_features(n) for n in reference]
    gen = [music_features(n) for n in generated]
    rows = []
    for feature, bins in FEATURE_BINS.items():
        a = np.concatenate([f[feature] for f in ref]) if ref else np.zeros(0)
        b = np.concatenate([f[feature] for f in gen]) if gen else np.zeros(0)
        overlap, kl = overlap_and_kl(a, b, bins)
        rows.append(
            {
                "feature": feature,
                "overlap": overlap,
                "kl": kl,
                "reference_mean": float(a.mean()) if len(a) else float("nan"),
                "generated_mean": float(b.mean()) if len(b) else float("nan"),
            }
        )
    return rows


__all__ = [
    "FEATURE_BINS",
    "compare_features",
    "music_features",
    "ngram_log_probs",
    "overlap_and_kl",
    "score_blocks",
]
