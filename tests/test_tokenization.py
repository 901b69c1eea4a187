"""MidiTokenizer: vocabulary, MIDI round trips on real performances, the oracle, robustness."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import symusic
from hypothesis import given, settings
from hypothesis import strategies as st
from pretty_midi_reference import reference_encode, reference_notes
from raw_midi import fast_tempo_bomb, late_note_bomb, long_note_bomb, note, smf
from transformers import AutoTokenizer

import hf_music
from hf_music import MidiReadError, MidiTokenizer
from hf_music.music_transformer.tokenization_music_transformer import (
    MAX_PIECE_SECONDS,
    PerformanceNotes,
    PieceTooLongError,
    read_score,
)
from hf_music.resources import DEFAULT_MODEL_DIR

STEP = 0.01
TOLERANCE = STEP / 2 + 1e-6  # nearest-step rounding: at most half a step off


def make_score(notes, tpq=480, tempos=((0, 120.0),), pedals=(), drum_notes=()):
    """A Score in ticks from (start_tick, duration_tick, pitch, velocity) tuples."""
    score = symusic.Score(tpq)
    for tick, qpm in tempos:
        score.tempos.append(symusic.Tempo(tick, qpm=qpm))
    track = symusic.Track(name="piano", program=0)
    for start, duration, pitch, velocity in notes:
        track.notes.append(symusic.Note(start, duration, pitch, velocity))
    for tick, value in pedals:
        track.controls.append(symusic.ControlChange(tick, 64, value))
    score.tracks.append(track)
    if drum_notes:
        drums = symusic.Track(name="drums", program=0, is_drum=True)
        for start, duration, pitch, velocity in drum_notes:
            drums.notes.append(symusic.Note(start, duration, pitch, velocity))
        score.tracks.append(drums)
    return score


# ---------------------------------------------------------------- vocabulary and text API
def test_vocabulary_has_391_ids_in_four_event_blocks_after_three_specials(tokenizer):
    assert tokenizer.vocab_size == len(tokenizer) == 391
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    tokens = tokenizer.convert_ids_to_tokens([3, 130, 131, 258, 259, 358, 359, 390])
    assert tokens == [
        "NOTE_ON_0",
        "NOTE_ON_127",
        "NOTE_OFF_0",
        "NOTE_OFF_127",
        "TIME_SHIFT_1",
        "TIME_SHIFT_100",
        "VELOCITY_0",
        "VELOCITY_31",
    ]
    assert len(set(tokenizer.get_vocab())) == 391


def test_constructor_arguments_change_vocabulary_and_survive_save(tmp_path):
    tok = MidiTokenizer(time_resolution_ms=8, max_time_shift=125, num_velocity_bins=16, sustain_pedal=False)
    assert tok.vocab_size == 3 + 256 + 125 + 16
    tok.save_pretrained(tmp_path)
    loaded = MidiTokenizer.from_pretrained(tmp_path)
    assert (loaded.time_resolution_ms, loaded.max_time_shift, loaded.num_velocity_bins) == (8, 125, 16)
    assert loaded.sustain_pedal is False
    assert loaded.get_vocab() == tok.get_vocab()


def test_text_form_padding_batching(tokenizer):
    enc = tokenizer("NOTE_ON_60 TIME_SHIFT_50 NOTE_OFF_60")
    assert enc["input_ids"] == [1, 3 + 60, 259 + 49, 131 + 60]  # <bos>, no <eos>: a prompt goes on
    batch = tokenizer(
        ["NOTE_ON_60", "NOTE_ON_60 TIME_SHIFT_1 NOTE_OFF_60"], padding=True, return_tensors="pt"
    )
    assert batch["input_ids"].shape == (2, 4)
    assert batch["input_ids"][0].tolist() == [0, 0, 1, 63]  # left padding, for generation
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1]
    padded = tokenizer.pad({"input_ids": [[1, 63], [1, 63, 259, 191]]}, padding="longest")
    assert padded["input_ids"][0] == [0, 0, 1, 63]
    texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    # Each event decodes with its leading space: a continuation appended to its prompt stays separated.
    assert texts == [" NOTE_ON_60", " NOTE_ON_60 TIME_SHIFT_1 NOTE_OFF_60"]
    assert "NOTE_ON_60" + tokenizer.decode([259, 191]) == "NOTE_ON_60 TIME_SHIFT_1 NOTE_OFF_60"
    with pytest.raises(ValueError, match="unknown event 'NOTE_ON_999'"):
        tokenizer("NOTE_ON_999")


def test_training_pieces_still_get_bos_and_eos(tokenizer, maestro_files):
    ids = tokenizer.encode_midi(maestro_files[0])
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]


def test_auto_tokenizer_loads_the_fast_tokenizer_and_midi_tokenizer_its_class(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    fast = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    assert type(fast).__name__ == "TokenizersBackend"  # transformers' own class: no code from the folder
    slow = MidiTokenizer.from_pretrained(tmp_path)
    assert isinstance(slow, MidiTokenizer)
    assert fast("NOTE_ON_60")["input_ids"] == slow("NOTE_ON_60")["input_ids"] == [1, 63]
    assert fast.get_vocab() == slow.get_vocab()
    assert (fast.padding_side, fast.truncation_side) == ("left", "left")


@pytest.fixture(scope="module")
def event_texts(maestro_files) -> tuple[list[str], list[list[int]]]:
    """Every maestro-mini file as event text, with MidiTokenizer's ids for that text."""
    tok = MidiTokenizer()
    texts = [" ".join(tok.convert_ids_to_tokens(tok.encode_midi(path)[1:-1])) for path in maestro_files]
    return texts, [tok(text)["input_ids"] for text in texts]


def test_fast_tokenizer_gives_midi_tokenizer_ids_on_maestro_mini(tmp_path, event_texts):
    import tokenizers

    texts, expected = event_texts
    MidiTokenizer().save_pretrained(tmp_path)  # what every checkpoint gets; the embedded one has it
    assert (tmp_path / "tokenizer.json").read_bytes() == (DEFAULT_MODEL_DIR / "tokenizer.json").read_bytes()
    raw = tokenizers.Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    assert [encoding.ids for encoding in raw.encode_batch(texts)] == expected
    fast = AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR, trust_remote_code=False)
    assert type(fast).__name__ == "TokenizersBackend" and fast.model_max_length == 2048
    assert fast(texts)["input_ids"] == expected
    assert sum(len(ids) for ids in expected) > 600_000
    decoded = fast.batch_decode(expected, skip_special_tokens=True)
    assert (
        decoded
        == [" " + text for text in texts]
        == MidiTokenizer().batch_decode(expected, skip_special_tokens=True)
    )
    with pytest.raises(Exception, match="UNK"):  # an unknown event is an error there too
        raw.encode("NOTE_ON_999")


def test_over_long_prompts_keep_their_most_recent_events(tmp_path, event_texts):
    MidiTokenizer(model_max_length=512).save_pretrained(tmp_path)
    text = event_texts[0][0]
    for tok in (
        MidiTokenizer.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False),
    ):
        assert tok.model_max_length == 512
        ids = tok(text, truncation=True)["input_ids"]
        assert len(ids) == 512 and ids[0] == tok.bos_token_id
        assert ids[1:] == tok(text)["input_ids"][-511:]


JS_DIR = Path(__file__).resolve().parent / "js"


def npm_install_tokenizers_js() -> None:
    """@huggingface/tokenizers into tests/js/node_modules (git-ignored), once."""
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            pytest.fail(
                f"{program} not found: the JavaScript check of tokenizer.json needs Node.js and npm "
                "(Debian: apt-get install nodejs npm, or bash scripts/install_system_packages.sh)"
            )
    if not (JS_DIR / "node_modules" / "@huggingface" / "tokenizers" / "package.json").is_file():
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=JS_DIR, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"npm install in {JS_DIR} failed: {result.stderr[-2000:]}"


@pytest.mark.slow
def test_javascript_tokenizer_gives_the_same_ids_on_maestro_mini(tmp_path, event_texts):
    npm_install_tokenizers_js()
    texts, expected = event_texts
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    result = subprocess.run(  # the embedded model's files, as a Hub user's browser would fetch them
        ["node", str(JS_DIR / "encode_events.mjs"), str(DEFAULT_MODEL_DIR), str(tmp_path / "texts.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["ids"] == expected
    assert out["decoded"] == [" " + text for text in texts]


# ---------------------------------------------------------------- encoding rules
def test_equal_time_order_velocity_changes_and_long_gaps(tokenizer):
    # 120 qpm, tpq 480: one tick = 1/960 s. Chord at 0 s, then notes after a 2.35 s gap.
    score = make_score(
        [
            (0, 480, 64, 80),  # 0.0 .. 0.5 s
            (0, 480, 60, 80),  # same time, same velocity bin: one VELOCITY token for both
            (480, 96, 67, 100),  # starts exactly when the chord ends: offs first
            (int(2.95 * 960), 96, 72, 100),  # gap 0.6 -> 2.95 s = 2.35 s
        ]
    )
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode_midi(score))
    assert tokens == [
        "<bos>",
        "VELOCITY_20",
        "NOTE_ON_60",
        "NOTE_ON_64",
        "TIME_SHIFT_50",
        "NOTE_OFF_60",
        "NOTE_OFF_64",
        "VELOCITY_25",
        "NOTE_ON_67",
        "TIME_SHIFT_10",
        "NOTE_OFF_67",
        "TIME_SHIFT_100",
        "TIME_SHIFT_100",
        "TIME_SHIFT_35",
        "NOTE_ON_72",
        "TIME_SHIFT_10",
        "NOTE_OFF_72",
        "<eos>",
    ]


def test_tempo_map_gives_absolute_seconds(tokenizer):
    # 60 qpm from tick 480 on: the second quarter lasts 1 s instead of 0.5 s.
    score = make_score([(480, 480, 60, 64), (960, 480, 62, 64)], tempos=((0, 120.0), (480, 60.0)))
    notes = tokenizer.ids_to_notes(tokenizer.encode_midi(score))
    np.testing.assert_allclose(notes.onset, [0.5, 1.5])
    np.testing.assert_allclose(notes.offset, [1.5, 2.5])


def test_sustain_pedal_extends_and_restrike_ends(tokenizer):
    # Pedal down 0.25 s .. 1.5 s. Note A (0..0.5 s) is held to 1.5 s; the same pitch struck
    # again at 1.0 s ends it there. Note B released after the pedal is unchanged.
    ticks = 960  # per second
    score = make_score(
        [(0, 480, 60, 64), (ticks, 240, 60, 64), (0, 2 * ticks, 48, 64)],
        pedals=((240, 127), (int(1.5 * ticks), 0)),
    )
    notes = tokenizer.ids_to_notes(tokenizer.encode_midi(score))
    got = sorted(zip(notes.pitch.tolist(), notes.onset.tolist(), notes.offset.tolist(), strict=True))
    assert got == [(48, 0.0, 2.0), (60, 0.0, 1.0), (60, 1.0, 1.5)]
    no_pedal = MidiTokenizer(sustain_pedal=False)
    notes = no_pedal.ids_to_notes(no_pedal.encode_midi(score))
    got = sorted(zip(notes.pitch.tolist(), notes.onset.tolist(), notes.offset.tolist(), strict=True))
    assert got == [(48, 0.0, 2.0), (60, 0.0, 0.5), (60, 1.0, 1.25)]


def test_pedal_held_at_end_of_file_is_released_there(tokenizer):
    score = make_score([(0, 96, 60, 64), (1920, 96, 62, 64)], pedals=((10, 127),))
    notes = tokenizer.ids_to_notes(tokenizer.encode_midi(score))
    np.testing.assert_allclose(notes.offset, [2.1, 2.1])  # file ends at tick 2016 = 2.1 s


def test_drums_dropped_tracks_merged(tokenizer):
    score = make_score([(0, 480, 60, 64)], drum_notes=[(0, 480, 36, 100)])
    second = symusic.Track(name="left hand", program=0)
    second.notes.append(symusic.Note(0, 480, 40, 64))
    score.tracks.append(second)
    notes = tokenizer.ids_to_notes(tokenizer.encode_midi(score))
    assert sorted(notes.pitch.tolist()) == [40, 60]


def test_inputs_path_bytes_score_and_list(tokenizer, maestro_files):
    path = maestro_files[0]
    from_path = tokenizer.encode_midi(path)
    assert tokenizer.encode_midi(str(path)) == from_path
    assert tokenizer.encode_midi(path.read_bytes()) == from_path
    assert tokenizer.encode_midi(symusic.Score(str(path))) == from_path
    assert tokenizer.encode_midi([path, path.read_bytes()]) == [from_path, from_path]
    assert from_path[0] == 1 and from_path[-1] == 2
    assert tokenizer.encode_midi(path, add_special_tokens=False) == from_path[1:-1]


# ---------------------------------------------------------------- real performances
@pytest.fixture(scope="module")
def round_trips(tokenizer, maestro_files):
    return [(path, tokenizer.encode_midi(path)) for path in maestro_files]


def test_round_trip_on_every_maestro_mini_file(tokenizer, round_trips):
    total_notes = total_dropped = 0
    for path, ids in round_trips:
        original = tokenizer.midi_to_notes(path)  # pedal-extended releases, seconds
        decoded = tokenizer.ids_to_notes(ids)
        *_, dropped = tokenizer.quantize_notes(original)
        total_notes += len(original)
        total_dropped += dropped
        # Pitch multiset: identical except repeated strikes of a pitch within one 10 ms step.
        lost = Counter(original.pitch.tolist()) - Counter(decoded.pitch.tolist())
        assert sum(lost.values()) == dropped, path.name
        assert not Counter(decoded.pitch.tolist()) - Counter(original.pitch.tolist()), path.name
        # Match notes by pitch and order of onset (drops are same-step duplicates, removed first).
        for pitch in np.unique(original.pitch):
            o_idx = np.flatnonzero(original.pitch == pitch)
            o_idx = o_idx[np.argsort(original.onset[o_idx], kind="stable")]
            d_idx = np.flatnonzero(decoded.pitch == pitch)
            d_idx = d_idx[np.argsort(decoded.onset[d_idx], kind="stable")]
            o_on = original.onset[o_idx]
            # keep the last of each group that rounds to the same step (the survivor)
            steps = np.floor(o_on / STEP + 0.5 + 1e-6)
            survivor = np.r_[steps[1:] != steps[:-1], True]
            o_idx, o_on = o_idx[survivor], o_on[survivor]
            assert len(o_idx) == len(d_idx), (path.name, pitch)
            assert np.all(np.abs(decoded.onset[d_idx] - o_on) <= TOLERANCE), (path.name, pitch)
            vel_bin_width = 128 / tokenizer.num_velocity_bins
            assert np.all(np.abs(decoded.velocity[d_idx] - original.velocity[o_idx]) < vel_bin_width)
            # Release: pedal-extended, ended by the next strike of the pitch, at least one step.
            expected_off = original.offset[o_idx].copy()
            expected_off[:-1] = np.minimum(expected_off[:-1], o_on[1:])
            expected_off = np.maximum(expected_off, o_on + STEP)
            assert np.all(np.abs(decoded.offset[d_idx] - expected_off) <= STEP + 1e-6), (path.name, pitch)
            long_enough = expected_off - o_on > 1.5 * STEP
            assert np.all(
                np.abs(decoded.offset[d_idx][long_enough] - expected_off[long_enough]) <= TOLERANCE
            ), (path.name, pitch)
    assert total_notes == 152_602
    print(f"\nround trip: {total_notes} notes, {total_dropped} same-step repeated strikes dropped")
    assert total_dropped < 0.001 * total_notes


def test_encode_decode_encode_is_identity(tokenizer, round_trips):
    for path, ids in round_trips:
        assert tokenizer.encode_midi(tokenizer.decode_midi(ids)) == ids, path.name


def test_written_midi_file_round_trips(tokenizer, round_trips, tmp_path):
    _, ids = round_trips[0]
    out = tokenizer.write_midi(ids, tmp_path / "out.mid")
    assert tokenizer.encode_midi(out) == ids


def test_independent_pretty_midi_oracle_agrees(tokenizer, round_trips):
    """A loop-based pretty_midi encoder reads the files independently; the decoded notes agree."""
    for path, ids in round_trips:
        oracle = reference_encode(path)
        ours = tokenizer.ids_to_notes(ids)
        theirs = tokenizer.ids_to_notes(oracle)
        for field in ("onset", "offset", "pitch", "velocity"):
            np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=path.name)
        assert ids[1:-1] == oracle, path.name  # and the same event order, token for token
    # the oracle reads raw notes with a different library: same count before quantization
    path = round_trips[0][0]
    assert len(reference_notes(path)) == len(tokenizer.midi_to_notes(path))


# ---------------------------------------------------------------- decoding anything
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=400), max_size=400))
def test_any_id_sequence_decodes_to_valid_midi(ids):
    tok = MidiTokenizer()
    score = tok.decode_midi(ids)
    data = score.dumps_midi()
    reread = symusic.Score.from_midi(data)  # a valid standard MIDI file
    notes = reread.tracks[0].notes.numpy() if reread.tracks else {"duration": [], "pitch": [], "velocity": []}
    assert np.all(np.asarray(notes["duration"]) > 0)
    assert np.all((np.asarray(notes["pitch"]) >= 0) & (np.asarray(notes["pitch"]) <= 127))
    assert np.all((np.asarray(notes["velocity"]) >= 1) & (np.asarray(notes["velocity"]) <= 127))
    assert len(tok.ids_to_notes(tok.encode_midi(reread))) == reread.note_num()


def test_decoding_rules_for_ill_formed_sequences(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(
        [
            "<pad>",
            "NOTE_OFF_50",
            "NOTE_ON_60",
            "TIME_SHIFT_10",
            "NOTE_ON_60",
            "TIME_SHIFT_20",
            "<eos>",
            "NOTE_ON_64",
            "TIME_SHIFT_5",
        ]
    )
    notes = tokenizer.ids_to_notes(ids)
    got = sorted(zip(notes.pitch.tolist(), notes.onset.tolist(), notes.offset.tolist(), strict=True))
    # orphan NOTE_OFF ignored; re-struck 60 ends the first; open notes closed at the end (0.35 s)
    assert got == [(60, 0.0, 0.1), (60, 0.1, 0.35), (64, 0.3, 0.35)]
    assert tokenizer.decode_midi(np.array([ids, ids]))[1].note_num() == 3
    assert tokenizer.decode_midi([]).note_num() == 0


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("zero_bytes", "empty"),
        ("not_midi", "MThd"),
        ("truncated", "chunk length"),
        ("corrupted_Control168", "control_value=168"),
    ],
)
def test_bad_files_raise_midi_read_error_naming_file(tokenizer, bad_midi_files, name, cause):
    path = bad_midi_files[name]
    with pytest.raises(MidiReadError, match=cause) as info:
        tokenizer.encode_midi(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MidiReadError, match=cause):
        tokenizer.encode_midi(path.read_bytes())


def test_a_missing_file_is_named_and_a_wrong_input_type_refused(tokenizer, tmp_path):
    with pytest.raises(MidiReadError, match=r"nope\.mid"):
        tokenizer.encode_midi(tmp_path / "nope.mid")
    with pytest.raises(TypeError, match="int"):
        tokenizer.encode_midi(42)


def test_file_without_notes_gives_only_special_tokens(tokenizer, bad_midi_files):
    assert tokenizer.encode_midi(bad_midi_files["no_notes"]) == [1, 2]
    assert tokenizer.encode_midi(bad_midi_files["no_notes"], add_special_tokens=False) == []


def test_odd_but_valid_file_encodes(tokenizer, bad_midi_files):
    # Parses with current symusic: a 13-track file with drums; drums must be dropped.
    ids = tokenizer.encode_midi(bad_midi_files["corrupted_unexpected_EOF"])
    score = symusic.Score(str(bad_midi_files["corrupted_unexpected_EOF"]))
    pitched = sum(t.note_num() for t in score.tracks if not t.is_drum)
    assert 0 < len(tokenizer.ids_to_notes(ids)) <= pitched


def test_the_package_exports_the_tokenizer_and_its_error():
    assert hf_music.MidiTokenizer is MidiTokenizer
    assert issubclass(hf_music.MidiReadError, ValueError)


def test_riff_midi_files_are_read_like_their_midi(tokenizer, tmp_path):
    from pathlib import Path

    from hf_music.resources import bundled_prompts

    rmi = Path(__file__).parent / "fixtures" / "scarlatti_sonata_k525.rmi"
    assert rmi.read_bytes()[:4] == b"RIFF"
    expected = tokenizer.encode_midi(bundled_prompts()["scarlatti_sonata_k525"])
    assert tokenizer.encode_midi(rmi) == expected and tokenizer.encode_midi(rmi.read_bytes()) == expected
    broken = tmp_path / "broken.rmi"
    broken.write_bytes(rmi.read_bytes()[:12] + b"LIST" + (4).to_bytes(4, "little") + b"INFO")
    with pytest.raises(MidiReadError, match=r"broken\.rmi: a RIFF MIDI file without a 'data' chunk"):
        tokenizer.encode_midi(broken)


@pytest.mark.parametrize("bad", [[1, 2**64], [1, None], [0.5], "NOTE_ON_60"])
def test_decoding_non_integer_ids_is_a_value_error(tokenizer, bad):
    with pytest.raises(ValueError, match="token ids must be integers"):
        tokenizer.decode_midi(bad)


def test_notes_past_the_int32_tick_range_are_dropped_not_wrapped(tokenizer):
    from hf_music import PerformanceNotes

    hours = 3600.0
    notes = PerformanceNotes(
        np.array([1.0, 590 * hours, 600 * hours]), np.array([2.0, 590 * hours + 1, 600 * hours + 1]),
        np.array([60, 62, 64]), np.array([64, 64, 64]),
    )  # fmt: skip
    score = tokenizer.notes_to_score(notes)
    starts = sorted(note.time for note in score.tracks[0].notes)
    assert starts == [1000, int(590 * hours * 1000)]  # the third, past ~596 h, is left out


# ---------------------------------------------------------------- byte-pair encoding
@pytest.fixture(scope="module")
def bpe_tokenizer(maestro_files):
    """Merges learned on 10 maestro-mini files, up to 1000 ids."""
    base = MidiTokenizer()
    return base.train_bpe([base.encode_midi(path) for path in maestro_files[:10]], 1000)


def test_bpe_is_lossless_on_every_maestro_mini_file(bpe_tokenizer, maestro_files):
    base = MidiTokenizer()
    base_count = merged_count = 0
    for path in maestro_files:
        events, merged = np.asarray(base.encode_midi(path)), np.asarray(bpe_tokenizer.encode_midi(path))
        assert np.array_equal(bpe_tokenizer.base_ids(merged), events), path
        assert all(
            np.array_equal(a, b)
            for a, b in zip(base.ids_to_notes(events), bpe_tokenizer.ids_to_notes(merged), strict=True)
        )
        base_count, merged_count = base_count + len(events), merged_count + len(merged)
    assert merged_count < 0.85 * base_count  # measured: 0.80 of the events on the 52 files
    assert len(bpe_tokenizer) == 1000 and len(bpe_tokenizer.bpe_merges) == 609


def test_bpe_merges_end_at_a_time_shift_and_name_their_events(bpe_tokenizer):
    tok = bpe_tokenizer
    names = tok.convert_ids_to_tokens(list(range(tok.base_vocab_size, len(tok))))
    assert all("+" in name for name in names)
    for merged, name in zip(range(tok.base_vocab_size, len(tok)), names, strict=True):
        events = tok.base_ids([merged])
        assert name == "+".join(tok.convert_ids_to_tokens(events.tolist()))
        is_shift = (events >= tok.time_shift_offset) & (events < tok.velocity_offset)
        assert not is_shift[:-1].any()  # a TIME_SHIFT only as the last event
    shifts = tok.base_ids(range(tok.base_vocab_size, len(tok)))
    assert tok.steps_of_id[tok.base_vocab_size :].sum() == tok.steps_of_id[shifts].sum() > 0
    with pytest.raises(ValueError, match="TIME_SHIFT may only end"):
        MidiTokenizer(bpe_merges=[[tok.time_shift_offset, tok.note_on_offset]])
    with pytest.raises(ValueError, match="events or earlier merges"):
        MidiTokenizer(bpe_merges=[[0, 5]])


def test_bpe_tokenizer_is_saved_and_loaded_with_its_merges(bpe_tokenizer, tmp_path, maestro_files):
    bpe_tokenizer.save_pretrained(tmp_path)
    for loaded in (MidiTokenizer.from_pretrained(tmp_path), hf_music.load_tokenizer(str(tmp_path))):
        assert loaded.bpe_merges == bpe_tokenizer.bpe_merges and len(loaded) == 1000
        assert loaded.encode_midi(maestro_files[20]) == bpe_tokenizer.encode_midi(maestro_files[20])
    # The text side without hf_music: tokenizer.json knows the merged tokens by name.
    fast = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    ids = bpe_tokenizer.encode_midi(maestro_files[20])[:300]
    text = fast.decode(ids, skip_special_tokens=True)
    assert fast(text)["input_ids"] == bpe_tokenizer(text)["input_ids"] == ids[:1] + [i for i in ids if i > 2]
    assert fast.get_vocab() == bpe_tokenizer.get_vocab()


def test_train_bpe_needs_the_base_vocabulary_and_room_for_merges(bpe_tokenizer):
    with pytest.raises(ValueError, match="exceed the 391"):
        MidiTokenizer().train_bpe([[1, 3, 4, 2]], 391)
    with pytest.raises(ValueError, match="has merges already"):
        bpe_tokenizer.train_bpe([[1, 3, 4, 2]], 2000)


def test_midi_time_bombs_are_refused_before_allocating(tmp_path, tokenizer):
    # Before: the 44-byte file raised numpy's MemoryError (34 GB for 4.5e11 steps); the 16-day
    # note gave 1.4M ids.
    for name, data in (("late.mid", late_note_bomb()), ("long.mid", long_note_bomb())):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(
            PieceTooLongError, match=rf"^{path}: lasts [\d,.]+ h, over the limit of 6 h per piece$"
        ):
            tokenizer.encode_midi(path)
        with pytest.raises(MidiReadError, match=r"^<\d+ bytes of MIDI>: lasts"):  # a ValueError, too
            tokenizer.encode_midi(data)
    # Two minutes over 2**28 quarters are fine here: performance events count seconds, not beats.
    assert len(tokenizer.encode_midi(fast_tempo_bomb())) < 300
    # Note arrays handed straight to encode_notes are bounded too.
    days = PerformanceNotes(np.zeros(1), np.full(1, MAX_PIECE_SECONDS + 1.0), np.full(1, 60), np.full(1, 64))
    with pytest.raises(PieceTooLongError, match="over the limits"):
        tokenizer.encode_notes(days)


def test_notes_the_parser_drops_are_counted_and_reported(tmp_path, tokenizer, caplog, maestro_files):
    unclosed = smf([note(0, 60, 100) + bytes((0, 0x90, 62, 64)) + note(100, 64, 100)])  # 62 never ends
    path = tmp_path / "unclosed.mid"
    path.write_bytes(unclosed)
    score, dropped = read_score(path)
    assert (score.note_num(), dropped) == (2, 1)
    assert f"{path}: 1 note(s) dropped" in caplog.text
    notes, dropped = tokenizer.read_notes(unclosed, name="song.mid")
    assert (len(notes), dropped) == (2, 1) and "song.mid: 1 note(s) dropped" in caplog.text
    # A header that counts one track of two: symusic reads only the first.
    _, dropped = read_score(smf([note(0, 60, 100), note(0, 62, 100) + note(0, 64, 100)], declared=1))
    assert dropped == 2
    caplog.clear()
    _, dropped = read_score(smf([note(0, 60, 100)], declared=3), name="short.mid")
    assert dropped == 0 and "short.mid: the header declares 3 tracks, 1 are present" in caplog.text
    caplog.clear()
    assert read_score(maestro_files[0])[1] == 0 and not caplog.text  # real performances lose nothing
