"""Training windows and evaluation blocks: augmentation on ids, determinism, padding, strides."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MAESTRO_MINI

from hf_music.windows import (
    IGNORE_INDEX,
    Augmentation,
    WindowSampler,
    evaluation_blocks,
    pitch_range,
    stretch_ids,
    transpose_ids,
)


@pytest.fixture(scope="module")
def pieces(tokenizer):
    files = sorted(MAESTRO_MINI.glob("*/*.midi"))[:6]
    return [np.asarray(tokenizer.encode_midi(f), np.int64) for f in files]


def test_stretch_scales_every_note_time(pieces, tokenizer):
    notes = tokenizer.ids_to_notes(pieces[0])
    stretched = tokenizer.ids_to_notes(stretch_ids(pieces[0], tokenizer, 1.05))
    assert len(stretched) == len(notes)
    assert np.allclose(stretched.onset, notes.onset * 1.05, atol=0.0051)  # within half a 10 ms step
    assert np.array_equal(np.sort(stretched.pitch), np.sort(notes.pitch))
    assert np.array_equal(stretch_ids(pieces[0], tokenizer, 1.0), pieces[0])


def test_transpose_moves_only_note_events(tokenizer):
    ids = np.array(
        [
            tokenizer.encode(
                "VELOCITY_10 NOTE_ON_60 TIME_SHIFT_5 NOTE_OFF_60 NOTE_ON_21", add_special_tokens=False
            )
        ]
    )
    up = transpose_ids(ids, tokenizer, np.array([3]))
    assert tokenizer.decode(up[0]) == " VELOCITY_10 NOTE_ON_63 TIME_SHIFT_5 NOTE_OFF_63 NOTE_ON_24"


def test_epoch_windows_are_deterministic_augmented_and_in_range(pieces, tokenizer):
    sampler = WindowSampler(pieces, 256, tokenizer, Augmentation(), seed=0)
    first, again, other = sampler.epoch(0), sampler.epoch(0), sampler.epoch(1)
    assert first["input_ids"].shape == (len(pieces), 256)
    assert np.array_equal(first["input_ids"], again["input_ids"])
    assert not np.array_equal(first["input_ids"], other["input_ids"])
    # Transposition never pushes a window's notes out of 0..127.
    for row in first["input_ids"]:
        low, high = pitch_range(row, tokenizer)
        assert 0 <= low <= high < 128
    # Over epochs the transpositions cover -3..+3 (a piece of one pitch shows its shift directly).
    one_pitch = np.asarray(
        tokenizer.encode(" ".join(["NOTE_ON_60 TIME_SHIFT_20 NOTE_OFF_60"] * 50)), np.int64
    )
    sampler = WindowSampler([one_pitch], 16, tokenizer, Augmentation(), seed=0)
    shifts = {int(tokenizer.note_events(sampler.epoch(e)["input_ids"][0])[1][0]) - 60 for e in range(60)}
    assert shifts == set(range(-3, 4))


def test_short_piece_is_padded_with_ignored_labels(tokenizer):
    short = np.asarray(tokenizer.encode("NOTE_ON_60 TIME_SHIFT_10 NOTE_OFF_60"), np.int64)
    batch = WindowSampler([short], 8, tokenizer).epoch(0)
    pad = 8 - len(short)  # <bos> and three events (text gets no <eos>): four pads
    assert pad == 4 and batch["input_ids"][0].tolist() == [*short.tolist(), *[0] * pad]
    assert batch["labels"][0].tolist() == [*short.tolist(), *[IGNORE_INDEX] * pad]


def test_transposition_keeps_pitches_in_range(tokenizer):
    edge = np.asarray(
        tokenizer.encode("NOTE_ON_0 TIME_SHIFT_1 NOTE_ON_127 TIME_SHIFT_1 NOTE_OFF_0"), np.int64
    )
    sampler = WindowSampler([edge], 8, tokenizer, Augmentation(stretches=()), seed=0)
    for epoch in range(10):
        assert np.array_equal(sampler.epoch(epoch)["input_ids"][0][: len(edge)], edge)


def test_evaluation_blocks_score_every_token_once():
    pieces = [np.arange(10), np.arange(100, 117)]  # 27 ids
    blocks, first = evaluation_blocks(pieces, 8)
    assert blocks.shape == (3, 8) and first.tolist() == [0, 0, 0]
    assert blocks.ravel().tolist() == np.concatenate(pieces)[:24].tolist()
    blocks, first = evaluation_blocks(pieces, 8, stride=4)
    # Overlapping blocks: after the first, each scores its last 4 positions (targets 3..6).
    flat = np.concatenate(pieces)
    assert blocks[:, 0].tolist() == flat[[0, 4, 8, 12, 16]].tolist() and first.tolist() == [0, 3, 3, 3, 3]
    scored = [blocks[0, 1:].tolist()] + [blocks[i, 1 + first[i] :].tolist() for i in range(1, len(blocks))]
    assert [token for row in scored for token in row] == flat[1:24].tolist()  # each token once
    with pytest.raises(ValueError, match="stride"):
        evaluation_blocks(pieces, 8, stride=9)


def test_augmentation_ranges_and_determinism(pieces, tokenizer):
    original = tokenizer.ids_to_notes(pieces[0])
    aug = Augmentation()
    seen_shifts, seen_stretch = set(), set()
    for seed in range(40):
        notes = aug.apply(original, np.random.default_rng(seed))
        again = aug.apply(original, np.random.default_rng(seed))
        assert all(np.array_equal(a, b) for a, b in zip(notes, again, strict=True))
        shift = int(np.median(notes.pitch)) - int(np.median(original.pitch))
        assert -3 <= shift <= 3
        assert len(notes) == len(original)  # nothing is pushed out of 0..127 by 3 semitones here
        seen_shifts.add(shift)
        stretch = notes.offset.max() / original.offset.max()
        nearest = min(aug.stretches, key=lambda s: abs(s - stretch))
        assert abs(stretch - nearest) < 0.001
        seen_stretch.add(nearest)
    assert seen_shifts == set(range(-3, 4)) and seen_stretch == set(aug.stretches)


def test_transposition_drops_notes_pushed_out_of_range(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(
        ["<bos>", "NOTE_ON_126", "NOTE_ON_60", "TIME_SHIFT_10", "NOTE_OFF_126", "NOTE_OFF_60", "<eos>"]
    )
    notes = Augmentation(transpose=3, stretches=(1.0,)).apply(
        tokenizer.ids_to_notes(ids), np.random.default_rng(1)
    )
    shift = int(notes.pitch.min()) - 60
    assert notes.pitch.tolist() == ([60 + shift, 126 + shift] if 126 + shift <= 127 else [60 + shift])
