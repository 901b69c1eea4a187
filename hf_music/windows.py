"""Training windows and evaluation blocks cut from token-id pieces, with augmentation on the ids.

    sampler = WindowSampler(pieces, 2048, tokenizer, Augmentation(), seed=0)
    batch = sampler.epoch(3)          # {"input_ids", "labels"}: one random window per piece
    blocks, first = evaluation_blocks(pieces, 2048, stride=1024)

numpy only (no `datasets`): train.py and evaluate.py use it for MAESTRO, MIDI folders and
token packs alike. Augmentation as the Music Transformer trained on MAESTRO: a time stretch
(the piece decoded to notes, scaled, re-encoded once per stretch factor, when the sampler is
made) and a transposition (an offset added to the NOTE_ON / NOTE_OFF ids of each window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .music_transformer.tokenization_music_transformer import NUM_PITCHES, MidiTokenizer, PerformanceNotes

IGNORE_INDEX = -100  # label of padding: transformers' loss skips it


@dataclass
class Augmentation:
    """Random pitch transposition and time stretch, as the Music Transformer trained on MAESTRO.

    transpose: semitones drawn uniformly from -transpose..+transpose (narrowed for a piece
        whose notes would leave 0..127). stretches: time factors drawn uniformly from this tuple.
    """

    transpose: int = 3
    stretches: tuple[float, ...] = (0.95, 0.975, 1.0, 1.025, 1.05)

    def apply(self, notes: PerformanceNotes, rng: np.random.Generator) -> PerformanceNotes:
        """Notes transposed and stretched by one random draw; notes pushed out of 0..127 are dropped."""
        shift = int(rng.integers(-self.transpose, self.transpose + 1)) if self.transpose else 0
        stretch = float(rng.choice(self.stretches)) if self.stretches else 1.0
        pitch = notes.pitch + shift
        keep = (pitch >= 0) & (pitch < NUM_PITCHES)
        return PerformanceNotes(
            notes.onset[keep] * stretch, notes.offset[keep] * stretch, pitch[keep], notes.velocity[keep]
        )


def stretch_ids(ids, tokenizer: MidiTokenizer, factor: float) -> np.ndarray:
    """A piece played ``factor`` times as long: decoded to notes, times scaled, encoded again."""
    ids = np.asarray(ids, np.int64)
    if factor == 1.0:
        return ids
    notes = tokenizer.ids_to_notes(ids)
    scaled = PerformanceNotes(notes.onset * factor, notes.offset * factor, notes.pitch, notes.velocity)
    return tokenizer.encode_notes(
        scaled, add_special_tokens=bool(len(ids)) and ids[0] == tokenizer.bos_token_id
    )


def transpose_ids(ids: np.ndarray, tokenizer: MidiTokenizer, shifts: np.ndarray) -> np.ndarray:
    """Add ``shifts[i]`` semitones to every NOTE_ON / NOTE_OFF of row i (callers keep pitches in range)."""
    is_note = (ids >= tokenizer.note_on_offset) & (ids < tokenizer.time_shift_offset)
    return ids + is_note * np.asarray(shifts, ids.dtype)[:, None]


def pitch_range(ids, tokenizer: MidiTokenizer) -> tuple[int, int]:
    """(lowest, highest) pitch of a piece's note events, (0, 127) for a piece without notes."""
    _, pitches, _ = tokenizer.note_events(ids)
    return (int(pitches.min()), int(pitches.max())) if len(pitches) else (0, NUM_PITCHES - 1)


class WindowSampler:
    """One random window of ``block_size`` ids per piece and epoch, deterministic for (seed, epoch).

    Every stretched version of every piece is encoded once, here, and kept as one flat int16
    array; an epoch is then a few vectorized numpy operations (choose a version, a start and a
    transposition for each piece, gather, shift), whatever the corpus size. Pieces shorter
    than a block are padded; padding gets the label ``IGNORE_INDEX``. Right padding needs no
    attention mask in a causal model: no real token attends to a later position.
    """

    def __init__(
        self,
        pieces,
        block_size: int,
        tokenizer: MidiTokenizer,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ):
        if not len(pieces):
            raise ValueError("no pieces to cut windows from")
        self.block_size, self.tokenizer, self.seed = block_size, tokenizer, seed
        self.augmentation = augmentation
        stretches = augmentation.stretches if augmentation and augmentation.stretches else (1.0,)
        versions = [[stretch_ids(ids, tokenizer, f) for ids in pieces] for f in stretches]
        lengths = np.array([[len(ids) for ids in version] for version in versions], np.int64)
        self.lengths = lengths  # [versions, pieces]
        self.starts = np.concatenate([[0], np.cumsum(lengths.ravel())[:-1]]).reshape(lengths.shape)
        self.flat = np.concatenate([ids for version in versions for ids in version]).astype(np.int16)
        # Pitch ranges bound the transposition; without augmentation nothing reads note ids, so any
        # tokenizer (a miditok vocabulary, augmented by miditok itself) can be sampled from.
        if augmentation and augmentation.transpose:
            ranges = np.array([pitch_range(ids, tokenizer) for ids in pieces])
            self.lowest, self.highest = ranges[:, 0], ranges[:, 1]
        else:
            self.lowest, self.highest = np.zeros(len(pieces), np.int64), np.full(len(pieces), NUM_PITCHES - 1)

    def __len__(self) -> int:
        return self.lengths.shape[1]

    def epoch(self, epoch: int) -> dict[str, np.ndarray]:
        """int64 ``input_ids`` and ``labels`` of shape (pieces, block_size), in piece order."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self)
        version = rng.integers(self.lengths.shape[0], size=n)
        transpose = self.augmentation.transpose if self.augmentation else 0
        shifts = rng.integers(-transpose, transpose + 1, size=n)
        shifts = np.clip(shifts, -self.lowest, NUM_PITCHES - 1 - self.highest)
        length = self.lengths[version, np.arange(n)]
        start = (rng.random(n) * np.maximum(length - self.block_size + 1, 1)).astype(np.int64)
        offset = np.arange(self.block_size)
        inside = offset[None, :] < length[:, None] - start[:, None]
        index = self.starts[version, np.arange(n)][:, None] + start[:, None] + offset[None, :]
        ids = np.where(inside, self.flat[np.where(inside, index, 0)], self.tokenizer.pad_token_id)
        ids = ids.astype(np.int64)
        if transpose:
            ids = transpose_ids(ids, self.tokenizer, shifts)
        return {"input_ids": ids, "labels": np.where(inside, ids, IGNORE_INDEX)}


def evaluation_blocks(pieces, block_size: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every token of the pieces, concatenated (each <bos> ... <eos>), in blocks of ``block_size``.

    stride None (or block_size): contiguous blocks, the remainder dropped, every position after
    a block's first is scored. A smaller stride gives overlapping blocks that score only their
    last ``stride`` positions (all of the first block's), so each scored token sees at least
    ``block_size - stride`` tokens of context. Returns (blocks [N, block_size] int64, first
    scored target index per block [N]; target j predicts blocks[:, j + 1]).
    """
    stride = stride or block_size
    if not 0 < stride <= block_size:
        raise ValueError(f"stride must be in 1..block_size ({block_size}), got {stride}")
    flat = np.concatenate([np.asarray(ids, np.int64) for ids in pieces]) if len(pieces) else np.zeros(0)
    if len(flat) < block_size:
        return np.zeros((0, block_size), np.int64), np.zeros(0, np.int64)
    starts = np.arange(0, len(flat) - block_size + 1, stride)
    blocks = flat[starts[:, None] + np.arange(block_size)[None, :]].astype(np.int64)
    first = np.full(len(starts), block_size - 1 - stride, np.int64)
    first[0] = 0
    return blocks, np.maximum(first, 0)


__all__ = [
    "IGNORE_INDEX",
    "Augmentation",
    "WindowSampler",
    "evaluation_blocks",
    "pitch_range",
    "stretch_ids",
    "transpose_ids",
]
