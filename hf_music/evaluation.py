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

from .tokenization_music_transformer import NUM_PITCHES, MidiTokenizer, PerformanceNotes

# Dirichlet smoothing of the bigram towards the unigram: how many pseudo-counts the unigram gets.
BIGRAM_PRIOR = 1.0


def ngram_log_probs(sequences, vocab_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(unigram [V], bigram [V, V]) natural-log probabilities fitted on id sequences.

    Unigram: add-one counts of every target (ids after the first of each sequence). Bigram:
    P(b | a) = (c(a, b) + BIGRAM_PRIOR * P(b)) / (c(a) + BIGRAM_PRIOR), so unseen pairs fall
    back on the unigram instead of getting zero.
    """
    rows = [ids[ids != pad_id] for ids in (np.asarray(ids, dtype=np.int64) for ids in sequences)]
    targets = np.concatenate([ids[1:] for ids in rows] or [np.zeros(0, np.int64)])
    pair_codes = np.concatenate([ids[:-1] * vocab_size + ids[1:] for ids in rows] or [np.zeros(0, np.int64)])
    unigram = 1.0 + np.bincount(targets, minlength=vocab_size)
    unigram[pad_id] = 0
    p_unigram = unigram / unigram.sum()
    # One count over all pairs, then in place: a BPE vocabulary of 16,000 ids makes a 2 GB table.
    p_bigram = (
        np.bincount(pair_codes, minlength=vocab_size**2).reshape(vocab_size, vocab_size).astype(np.float64)
    )
    row_totals = p_bigram.sum(axis=1, keepdims=True) + BIGRAM_PRIOR
    p_bigram += BIGRAM_PRIOR * p_unigram
    p_bigram /= row_totals
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.log(p_unigram)), torch.from_numpy(np.log(p_bigram, out=p_bigram))


def next_token_log_probs(model, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(token j+1 | tokens <= j), the model's most likely token j+1), both [B, L-1], from
    whole blocks of real ids: the one NLL computation that training's validation and
    `score_blocks` share. No attention mask, so SDPA runs its causal (flash) kernel; the whole
    block goes in (the last position's logits unused), the shape a compiled model trained on."""
    logits = model(input_ids=input_ids, use_cache=False).logits[:, :-1]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    targets = input_ids[:, 1:]
    return log_probs.gather(-1, targets[..., None])[..., 0], log_probs.argmax(-1)


@torch.inference_mode()
def score_blocks(
    model,
    blocks,
    unigram: torch.Tensor,
    bigram: torch.Tensor,
    batch_size: int = 8,
    first_target=None,
    tokenizer: MidiTokenizer | None = None,
    progress: bool = False,
):
    """NLL, perplexity and accuracy of the model, the bigram and the unigram on the same targets.

    `blocks` is [N, L] ids without padding; target j of a block predicts position j + 1 from
    the positions before it. ``first_target[i]`` (default 0) skips block i's first targets,
    which `hf_music.windows.evaluation_blocks` uses to give every scored token a long context.
    Each row has nats and bits per token, and, with the tokenizer, nats per second of music (the
    TIME_SHIFTs among the targets) and per note (the NOTE_ONs). Everything runs on the model's device;
    ``progress`` shows a bar of blocks scored. Returns (rows, number of targets).
    """
    device = next(model.parameters()).device
    model.eval()
    blocks = torch.as_tensor(blocks)
    first = (
        torch.zeros(len(blocks), dtype=torch.long) if first_target is None else torch.as_tensor(first_target)
    )
    unigram, bigram = unigram.to(device), bigram.to(device)
    names = ("model", "bigram", "unigram")
    nll = torch.zeros(3, dtype=torch.float64, device=device)
    correct = torch.zeros(3, dtype=torch.long, device=device)
    count = steps = notes = 0
    starts = range(0, len(blocks), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="scoring", unit="batch")
    for start in starts:
        batch = blocks[start : start + batch_size].to(device).long()
        inputs, targets = batch[:, :-1], batch[:, 1:]
        positions = torch.arange(targets.shape[1], device=device)
        scored = positions[None, :] >= first[start : start + batch_size].to(device)[:, None]
        per_model = [
            next_token_log_probs(model, batch),
            (bigram[inputs, targets], bigram[inputs].argmax(-1)),
            (unigram[targets], torch.full_like(targets, int(unigram.argmax()))),
        ]
        for k, (target_log_probs, guess) in enumerate(per_model):
            nll[k] -= target_log_probs[scored].double().sum()
            correct[k] += (guess == targets)[scored].sum()
        count += int(scored.sum())
        if tokenizer is not None:
            kept = targets[scored].cpu().numpy()  # a merged (BPE) token may hold several events
            steps += int(tokenizer.steps_of_id[kept].sum())
            notes += int(tokenizer.notes_of_id[kept].sum())
    seconds = steps * tokenizer.time_step if tokenizer is not None else 0.0
    rows = []
    for k, name in enumerate(names):
        total = nll[k].item()
        row = {
            "name": name,
            "nll": total / count,
            "bits_per_token": total / count / math.log(2),
            "perplexity": math.exp(total / count),
            "accuracy": correct[k].item() / count,
        }
        if tokenizer is not None:
            row["nats_per_second"] = total / seconds if seconds else float("nan")
            row["nats_per_note"] = total / notes if notes else float("nan")
        rows.append(row)
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


# ---------------------------------------------------------------------------- degeneration
# Per-piece statistics that catch what a degenerate sampler does: too few notes, one key
# hammered, notes held for ever, walls of sound, silence.
DEGENERATION_STATISTICS = (
    "notes_per_second",
    "max_pitch_share",
    "longest_note_s",
    "polyphony_p95",
    "polyphony_max",
    "longest_silence_s",
    "longest_repeat_run",
)


def degeneration_statistics(
    notes: PerformanceNotes, duration: float, window_seconds: float = 10.0
) -> dict[str, float]:
    """Statistics of one piece lasting ``duration`` seconds (notes already cut to it).

    notes_per_second; max_pitch_share: the largest share of one pitch among the onsets of any
    ``window_seconds`` window (windows start at onsets and lie inside the piece; the whole piece
    when it is shorter); longest_note_s; polyphony_p95 / polyphony_max: notes sounding at each
    onset; longest_silence_s: the longest time with no note sounding, from 0 to ``duration``;
    longest_repeat_run: the most consecutive onsets (in time, then pitch, order) of one pitch.
    """
    order = np.lexsort((notes.pitch, notes.onset))
    onset, offset = np.asarray(notes.onset, float)[order], np.asarray(notes.offset, float)[order]
    pitch = np.asarray(notes.pitch, np.int64)[order]
    n = len(onset)
    if n == 0:
        zero = dict.fromkeys(DEGENERATION_STATISTICS, 0.0)
        return {**zero, "longest_silence_s": float(duration)}
    starts = np.flatnonzero(onset + window_seconds <= duration + 1e-9)
    starts = starts if len(starts) else np.array([0])
    ends = np.searchsorted(onset, onset[starts] + window_seconds, side="left")
    counts = np.zeros((n + 1, NUM_PITCHES), np.int32)
    counts[np.arange(1, n + 1), pitch] = 1
    counts = np.cumsum(counts, axis=0)
    window_counts = counts[ends] - counts[starts]
    share = window_counts.max(axis=1) / np.maximum(ends - starts, 1)
    sounding = np.searchsorted(onset, onset, side="right") - np.searchsorted(
        np.sort(offset), onset, side="right"
    )
    reach = np.maximum.accumulate(offset)
    gaps = np.concatenate([[onset[0]], onset[1:] - reach[:-1], [duration - reach[-1]]])
    change = np.flatnonzero(np.diff(pitch) != 0)
    runs = np.diff(np.concatenate([[-1], change, [n - 1]]))
    return {
        "notes_per_second": n / duration,
        "max_pitch_share": float(share.max()),
        "longest_note_s": float((offset - onset).max()),
        "polyphony_p95": float(np.percentile(sounding, 95)),
        "polyphony_max": float(sounding.max()),
        "longest_silence_s": float(max(gaps.max(), 0.0)),
        "longest_repeat_run": float(runs.max()),
    }


# ---------------------------------------------------------------------------- musicality
# What a listener hears that NLL does not: notes that hang, no key, no recurring figures.
MUSICAL_STATISTICS = (
    "long_note_share",
    "pitch_class_entropy",
    "key_correlation",
    "key_consistency",
    "recurring_figure_share",
)
LONG_NOTE_SECONDS = 7.9  # MAESTRO v3.0.0 test: 0.10% of notes last this long (the grammar's cap is 8 s)
# Krumhansl & Kessler (1982) probe-tone profiles, C major and C minor (Krumhansl 1990, Table 2.1).
KEY_PROFILES_C = np.array(
    [
        [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
        [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
    ]
)
# The 24 keys: row k < 12 is the major key on pitch class k, row 12 + k the minor one.
KEY_PROFILES = np.concatenate(
    [np.stack([np.roll(profile, k) for k in range(12)]) for profile in KEY_PROFILES_C]
)
FIGURE_INTERVALS = 3  # a figure: four successive onsets, i.e. three melodic intervals
# Bins of each statistic for the overlapping area of per-window distributions.
MUSICAL_BINS = {
    "long_note_share": np.array([0.0, 1e-9, 0.005, 0.01, 0.02, 0.05, 1.0]),
    "pitch_class_entropy": np.linspace(0.0, np.log2(12), 25),
    "key_correlation": np.linspace(-0.2, 1.0, 25),
    "key_consistency": np.linspace(0.0, 1.0, 11),
    "recurring_figure_share": np.linspace(0.0, 1.0, 21),
}


def key_correlations(histograms: np.ndarray) -> np.ndarray:
    """(n, 24) Pearson correlation of each pitch-class histogram (n, 12) with the 24 key profiles."""
    h = np.atleast_2d(np.asarray(histograms, dtype=np.float64))
    scale = np.abs(h).sum(axis=1, keepdims=True)
    h = h - h.mean(axis=1, keepdims=True)
    k = KEY_PROFILES - KEY_PROFILES.mean(axis=1, keepdims=True)
    spread = np.linalg.norm(h, axis=1, keepdims=True)
    norms = spread * np.linalg.norm(k, axis=1)[None, :]
    # A flat histogram (up to rounding) has no key: its correlations are 0, not noise.
    flat = spread <= 1e-9 * np.maximum(scale, 1e-300)
    return np.divide(h @ k.T, norms, out=np.zeros((len(h), 24)), where=~flat & (norms > 0))


def musical_statistics(notes: PerformanceNotes, duration: float, key_window_seconds: float = 5.0) -> dict:
    """Musical statistics of one window of ``duration`` seconds (notes already cut to it).

    long_note_share: notes lasting >= LONG_NOTE_SECONDS; pitch_class_entropy: bits, of the onsets'
    pitch classes (12 equally used: 3.58); key_correlation: the best of the 24 Krumhansl-Kessler key
    profiles' correlations with the duration-weighted pitch-class histogram (Krumhansl-Schmuckler);
    key_consistency: the share of ``key_window_seconds`` windows (with 4 notes or more) whose best key
    is the whole window's; recurring_figure_share: the share of figures (FIGURE_INTERVALS successive
    melodic intervals, onsets in time then pitch order) that occur again in the window.
    """
    order = np.lexsort((notes.pitch, notes.onset))
    onset, offset = np.asarray(notes.onset, float)[order], np.asarray(notes.offset, float)[order]
    pitch_class = np.asarray(notes.pitch, np.int64)[order] % 12
    n = len(onset)
    if n == 0:
        return dict.fromkeys(MUSICAL_STATISTICS, 0.0)
    lengths = offset - onset
    counts = np.bincount(pitch_class, minlength=12) / n
    used = counts[counts > 0]
    # Durations capped at 2 s, so one hanging note does not decide the key of a window.
    weights = np.minimum(lengths, 2.0)
    window = np.minimum(
        (onset // key_window_seconds).astype(np.int64), max(int(duration // key_window_seconds) - 1, 0)
    )
    histograms = np.zeros((window.max() + 1, 12))
    np.add.at(histograms, (window, pitch_class), weights)
    whole_key = key_correlations(histograms.sum(axis=0))[0]
    full = np.bincount(window, minlength=len(histograms)) >= 4
    window_keys = key_correlations(histograms[full]).argmax(axis=1)
    return {
        "long_note_share": float(np.mean(lengths >= LONG_NOTE_SECONDS)),
        "pitch_class_entropy": float(-(used * np.log2(used)).sum()),
        "key_correlation": float(whole_key.max()),
        "key_consistency": float(np.mean(window_keys == whole_key.argmax())) if full.any() else 0.0,
        "recurring_figure_share": recurring_figure_share(np.asarray(notes.pitch, np.int64)[order]),
    }


def recurring_figure_share(pitches: np.ndarray, intervals: int = FIGURE_INTERVALS) -> float:
    """The share of the figures (runs of ``intervals`` successive melodic intervals) seen more than once."""
    steps = np.diff(pitches) + 127  # 0..254
    if len(steps) < intervals:
        return 0.0
    figures = np.lib.stride_tricks.sliding_window_view(steps, intervals) @ (255 ** np.arange(intervals))
    _, inverse, counts = np.unique(figures, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def musicality_summary(windows, seconds: float, reference_windows: list[dict] | None = None) -> dict:
    """Of pieces (or windows) of ``seconds``: the pooled shares of notes held >= LONG_NOTE_SECONDS and
    >= 4 s, the duration percentiles, each window's `musical_statistics` and their medians, and with
    ``reference_windows`` (statistics of real ones) the overlapping area of each statistic."""
    stats = [musical_statistics(notes, seconds) for notes in windows]
    lengths = np.concatenate([notes.offset - notes.onset for notes in windows] or [np.zeros(0)])
    summary = {
        "notes": len(lengths),
        "held_7_9s_share": float(np.mean(lengths >= LONG_NOTE_SECONDS)) if len(lengths) else 0.0,
        "held_4s_share": float(np.mean(lengths >= 4.0)) if len(lengths) else 0.0,
        "duration_p50_p90_p99": [float(q) for q in np.percentile(lengths, [50, 90, 99])]
        if len(lengths)
        else [],
        "medians": {name: float(np.median([s[name] for s in stats])) for name in MUSICAL_STATISTICS},
        "windows": stats,
    }
    if reference_windows is not None:
        summary["overlap"] = overlap_of_statistics(reference_windows, stats)
        summary["mean_musical_overlap"] = float(np.mean(list(summary["overlap"].values())))
    return summary


def windows_of(notes: PerformanceNotes, duration: float, window_seconds: float) -> list[PerformanceNotes]:
    """A piece of ``duration`` seconds cut into whole windows of ``window_seconds`` (each shifted to 0)."""
    count = max(1, int(duration // window_seconds + 1e-9))
    return [excerpt(notes, k * window_seconds, window_seconds) for k in range(count)]


def overlap_of_statistics(reference: list[dict], generated: list[dict]) -> dict[str, float]:
    """Per musical statistic, the overlapping area of the windows' distributions (1 = identical)."""
    return {
        name: overlap_and_kl(
            np.array([r[name] for r in reference]), np.array([g[name] for g in generated]), bins
        )[0]
        for name, bins in MUSICAL_BINS.items()
    }


def reference_excerpts(pieces, tokenizer, count: int, seconds: float, seed: int) -> list[PerformanceNotes]:
    """`count` random excerpts of `seconds` from random pieces, as notes after the tokenizer's round trip."""
    rng = np.random.default_rng(seed)
    excerpts = []
    for index in rng.integers(len(pieces), size=count):
        notes = tokenizer.ids_to_notes(pieces[index])
        start = rng.uniform(0, max(float(notes.offset.max()) - seconds, 0.0))
        excerpts.append(excerpt(notes, start, seconds))
    return excerpts


def excerpt(notes: PerformanceNotes, start: float, seconds: float) -> PerformanceNotes:
    """The notes struck in [start, start + seconds), shifted to 0 and cut at the excerpt's end."""
    keep = (notes.onset >= start) & (notes.onset < start + seconds)
    onset = notes.onset[keep] - start
    offset = np.minimum(notes.offset[keep] - start, seconds)
    return PerformanceNotes(onset, offset, notes.pitch[keep], notes.velocity[keep])


def out_of_range_limits(reference: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """(low, high) per statistic: the references' 1st percentile of notes per second, else 99th."""
    limits = {}
    for name in DEGENERATION_STATISTICS:
        values = np.array([stats[name] for stats in reference])
        if name == "notes_per_second":
            limits[name] = (float(np.percentile(values, 1)), float("inf"))
        else:
            limits[name] = (float("-inf"), float(np.percentile(values, 99)))
    return limits


def out_of_range(stats: dict[str, float], limits: dict[str, tuple[float, float]]) -> list[str]:
    """The statistics of one piece that fall outside the limits."""
    return [name for name, (low, high) in limits.items() if not low <= stats[name] <= high]


__all__ = [
    "DEGENERATION_STATISTICS",
    "FEATURE_BINS",
    "KEY_PROFILES",
    "LONG_NOTE_SECONDS",
    "MUSICAL_BINS",
    "MUSICAL_STATISTICS",
    "compare_features",
    "degeneration_statistics",
    "excerpt",
    "key_correlations",
    "music_features",
    "musical_statistics",
    "musicality_summary",
    "next_token_log_probs",
    "ngram_log_probs",
    "out_of_range",
    "out_of_range_limits",
    "overlap_and_kl",
    "overlap_of_statistics",
    "recurring_figure_share",
    "reference_excerpts",
    "score_blocks",
    "windows_of",
]
