"""The music-tokenizer interface: both tokenizers provide every member, and each member behaves."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch
from conftest import MAESTRO_MINI

from hf_music import MidiTokenizer, MiditokTokenizer
from hf_music.generation import SAMPLING_DEFAULTS, prompt_to_ids, time_steps
from hf_music.music_tokenizer import MusicTokenizer, offers_grammar

ONSETS = np.array([0.0, 0.5, 1.0, 1.5])  # seconds at 120 qpm: on every vocabulary's grid
PITCHES = np.array([60, 64, 67, 72])


@pytest.fixture(scope="module", params=["performance", "REMI"])
def music_tokenizer(request):
    if request.param == "performance":
        return MidiTokenizer()
    return MiditokTokenizer.from_miditok("REMI", use_programs=True)


@pytest.fixture
def arpeggio(tmp_path):
    """A MIDI file of four half-second piano notes (C E G C) at 120 qpm, 2 s of music."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, qpm=120.0))
    track = symusic.Track(name="Piano", program=0, is_drum=False)
    for onset, pitch in zip(ONSETS, PITCHES, strict=True):
        track.notes.append(symusic.Note(int(onset * 960), 480, int(pitch), 80))
    score.tracks.append(track)
    path = tmp_path / "arpeggio.mid"
    score.dump_midi(str(path))
    return path


def test_both_tokenizers_are_music_tokenizers(music_tokenizer):
    assert isinstance(music_tokenizer, MusicTokenizer)
    assert not isinstance(object(), MusicTokenizer)


def test_a_midi_file_round_trips(music_tokenizer, arpeggio, tmp_path):
    ids = music_tokenizer.encode_midi(arpeggio)
    assert ids[0] == music_tokenizer.bos_token_id and ids[-1] == music_tokenizer.eos_token_id
    for notes in (
        music_tokenizer.midi_to_notes(arpeggio),
        music_tokenizer.ids_to_notes(ids),
        music_tokenizer.midi_to_notes(music_tokenizer.write_midi(ids, tmp_path / "again.mid")),
        music_tokenizer.midi_to_notes(music_tokenizer.decode_midi(ids)),
    ):
        np.testing.assert_array_equal(notes.pitch, PITCHES)
        np.testing.assert_allclose(notes.onset, ONSETS, atol=1e-3)
        np.testing.assert_allclose(notes.offset, ONSETS + 0.5, atol=1e-3)


def test_seconds_of_ids_and_a_prompts_first_seconds(music_tokenizer, arpeggio):
    assert music_tokenizer.seconds(music_tokenizer.encode_midi(arpeggio)) == pytest.approx(2.0)
    first = music_tokenizer.encode_midi(arpeggio, add_special_tokens=False, max_seconds=1.0)
    np.testing.assert_array_equal(music_tokenizer.ids_to_notes(first).pitch, PITCHES[:2])
    assert prompt_to_ids(arpeggio, music_tokenizer, prompt_seconds=1.0) == [
        music_tokenizer.bos_token_id,
        *first,
    ]
    with pytest.raises(ValueError, match=r"not-midi\.mid"):
        music_tokenizer.encode_midi(b"MThd garbage", name="not-midi.mid")


def test_performance_seconds_are_the_time_shift_clock(tokenizer):
    ids = tokenizer.encode_midi(sorted(MAESTRO_MINI.glob("*/*.midi"))[0])
    clock = int(time_steps(torch.tensor(ids), tokenizer)) * tokenizer.time_step
    assert tokenizer.seconds(ids) == clock > 60
    # ids past the tokenizer's vocabulary (a model's padded one) move no time, as in time_steps
    assert tokenizer.seconds([*ids, tokenizer.vocab_size + 5]) == clock


def test_performance_prompt_notes_are_cut_at_max_seconds(tokenizer, arpeggio):
    notes = tokenizer.ids_to_notes(tokenizer.encode_midi(arpeggio, max_seconds=0.75))
    np.testing.assert_allclose(notes.offset, [0.5, 0.75])  # the note sounding at 0.75 s ends there


def test_sampling_controls_say_which_settings_apply():
    performance, remi = MidiTokenizer(), MiditokTokenizer.from_miditok("REMI")
    # every sampling setting of generate_ids applies to the performance vocabulary, with the grammar
    assert set(performance.sampling_controls) == {*SAMPLING_DEFAULTS, "constrained"}
    assert offers_grammar(performance) and not offers_grammar(remi)
    assert remi.sampling_controls == ("temperature", "top_k", "top_p", "min_p")


def test_clock_augmentation_and_instruments():
    performance, remi = MidiTokenizer(), MiditokTokenizer.from_miditok("REMI", use_programs=True)
    assert (performance.time_step, performance.augmentation_stage, performance.keeps_instruments) == (
        0.01,
        "windows",
        False,
    )
    assert (remi.time_step, remi.augmentation_stage, remi.keeps_instruments) == (None, "corpus", True)
    assert performance.vocabulary_description == (
        "the performance-event vocabulary (391 ids; tracks merged into one piano part)"
    )
    assert remi.vocabulary_description.startswith("the miditok REMI (programs) vocabulary (")
