"""Audio rendering (FluidSynth + GM soundfont) and the piano roll."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import symusic

from hf_music import bundled_prompts
from hf_music.audio import (
    AudioUnavailableError,
    find_soundfont,
    piano_roll,
    piano_roll_figure,
    render_audio,
    write_wav,
)

SR = 22050


def one_note_score(pitch=60, start=0.5, end=1.5, velocity=100) -> symusic.Score:
    score = symusic.Score(1000, ttype="second")
    track = symusic.Track(program=0, ttype="second")
    track.notes.append(symusic.Note(start, end - start, pitch, velocity, ttype="second"))
    score.tracks.append(track)
    return score


def test_soundfont_is_installed_where_the_suite_runs():
    # .ci/run installs Debian's timgm6mb-soundfont and libfluidsynth3, as space/packages.txt does
    # on a Space; without them the audio tests below could not hear anything.
    assert find_soundfont() is not None


def test_render_audio_sounds_where_the_note_is():
    samples = render_audio(one_note_score(), SR, channels=1)
    assert samples.dtype == np.int16
    assert abs(len(samples) - int(2.5 * SR)) <= 1  # until the last release, plus one second of ring-out
    rms = lambda a, b: np.sqrt(np.mean(samples[int(a * SR) : int(b * SR)].astype(float) ** 2))  # noqa: E731
    # Silence before the onset (60 dB below the note, after peak normalisation), sound during the note.
    assert rms(0.0, 0.45) < rms(0.6, 1.4) / 1000 and rms(0.6, 1.4) > 1000
    spectrum = np.abs(np.fft.rfft(samples[int(0.6 * SR) : int(1.4 * SR)]))
    peak_hz = np.fft.rfftfreq(int(0.8 * SR), 1 / SR)[spectrum.argmax()]
    assert min(abs(peak_hz - 261.6 * k) for k in (1, 2, 3)) < 15  # middle C or one of its harmonics


def test_render_a_real_performance_and_write_wav(tmp_path):
    score = symusic.Score(str(bundled_prompts()["scarlatti_sonata_k525"]))
    samples = render_audio(score, SR, channels=1)
    last_release = max(
        float((n["time"] + n["duration"]).max()) for n in (t.notes.numpy() for t in score.to("second").tracks)
    )
    assert abs(len(samples) / SR - (last_release + 1)) < 0.01
    peak_dbfs = 20 * np.log10(np.abs(samples.astype(float)).max() / 32767)
    assert abs(peak_dbfs - (-1.0)) < 0.01  # normalised: loud, with 1 dB of headroom
    path = write_wav(samples, tmp_path / "piece.wav", SR)
    with wave.open(path) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SR)
        assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), samples)


def test_missing_soundfont_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(AudioUnavailableError, match="does not exist"):
        render_audio(one_note_score(), SR, soundfont=tmp_path / "missing.sf2")
    monkeypatch.setenv("HF_MUSIC_SOUNDFONT", str(tmp_path / "chosen.sf2"))  # set, but missing: no fallback
    assert find_soundfont() is None
    with pytest.raises(AudioUnavailableError, match=r"chosen\.sf2 does not exist"):
        render_audio(one_note_score(), SR)


def test_piano_roll_marks_the_note_cells():
    roll = piano_roll(one_note_score(pitch=64, start=1.0, end=2.0, velocity=90), frames_per_second=50)
    assert roll.shape == (128, 101)
    assert set(np.flatnonzero(roll.any(axis=1))) == {64}
    assert np.flatnonzero(roll[64]).tolist() == list(range(50, 100)) and roll[64, 50] == 90
    figure = piano_roll_figure(one_note_score(), title="one note", prompt_seconds=1.0)
    assert figure.axes[0].get_xlabel() == "seconds"


def test_normalize_peak_scales_to_the_target_and_keeps_silence():
    from hf_music.audio import normalize_peak

    quiet = np.array([0, 1000, -2000, 500], dtype=float)
    loud = normalize_peak(quiet, peak_dbfs=-6.0)
    assert loud.dtype == np.int16 and abs(loud).max() == round(32767 * 10 ** (-6 / 20))
    assert np.allclose(loud / abs(loud).max(), quiet / 2000, atol=1e-4)  # the shape is unchanged
    assert not normalize_peak(np.zeros(10)).any()


def test_piano_renderer_in_steps_equals_one_render_stereo_44k():
    from hf_music import MidiTokenizer
    from hf_music.audio import PianoRenderer

    tokenizer = MidiTokenizer()
    ids = tokenizer.encode_midi(bundled_prompts()["chopin_etude_op10_no9"])[:300]
    whole = render_audio(tokenizer.ids_to_notes(ids), 44100, channels=2)
    assert whole.dtype == np.int16 and whole.ndim == 2 and whole.shape[1] == 2
    assert abs(20 * np.log10(np.abs(whole.astype(float)).max() / 32767) + 1.0) < 0.01  # -1 dBFS
    assert not np.array_equal(whole[:, 0], whole[:, 1])  # stereo, not mono twice
    # The piece as the Space sees it while it is written: growing id prefixes, each decoded anew
    # (notes still sounding at a prefix's end are closed there by the decoder, and released later).
    with PianoRenderer(44100, channels=2) as renderer:
        for end in (40, 97, 150, 233):
            notes = tokenizer.ids_to_notes(ids[:end])
            renderer.render(notes, float(tokenizer.ids_to_notes(ids[:end]).offset.max(initial=0)))
        renderer.finish(tokenizer.ids_to_notes(ids))
        stepwise = renderer.samples()
    assert stepwise.shape == whole.shape and np.abs(stepwise.astype(int) - whole).max() <= 1


def two_track_score(programs=(0, 73)) -> symusic.Score:
    """Track one plays C4-E4-G4 in 0-1.5 s, track two the same notes in 2-3.5 s, on their own programs."""
    score = symusic.Score(1000, ttype="second")
    for program, start in zip(programs, (0.0, 2.0), strict=True):
        track = symusic.Track(program=program, ttype="second")
        for k, pitch in enumerate((60, 64, 67)):
            track.notes.append(symusic.Note(start + 0.5 * k, 0.5, pitch, 100, ttype="second"))
        score.tracks.append(track)
    return score


def test_each_track_plays_its_own_general_midi_program():
    def segment(samples, a, b):
        part = samples[int(a * SR) : int(b * SR)].astype(float)
        return part / np.linalg.norm(part)

    both = render_audio(two_track_score((0, 73)), SR, channels=1)  # piano, then flute
    piano_only = render_audio(two_track_score((0, 0)), SR, channels=1)
    flute_only = render_audio(two_track_score((73, 73)), SR, channels=1)
    # The second track's passage (2.1-3.4 s) sounds like the flute rendering, not the piano one;
    # the first track's (0.1-1.4 s) like the piano.
    like = lambda x, y: float(np.dot(segment(x, 2.1, 3.4), segment(y, 2.1, 3.4)))  # noqa: E731
    assert like(both, flute_only) > 0.99 and like(both, piano_only) < 0.5
    first = float(np.dot(segment(both, 0.1, 1.4), segment(piano_only, 0.1, 1.4)))
    assert first > 0.99


def long_note_midi(tmp_path, seconds: float, then: float | None = None) -> bytes:
    """A tiny MIDI file: middle C held `seconds` (and, if given, one short note at `then` s)."""
    score = symusic.Score(1000, ttype="second")
    track = symusic.Track(program=0, ttype="second")
    track.notes.append(symusic.Note(0.0, seconds, 60, 100, ttype="second"))
    if then is not None:
        track.notes.append(symusic.Note(then, 0.5, 64, 100, ttype="second"))
    score.tracks.append(track)
    path = tmp_path / "long.mid"
    score.dump_midi(str(path))
    return path.read_bytes()


def test_a_held_note_of_minutes_or_hours_renders_a_bounded_length(tmp_path):
    from hf_music.audio import MAX_NOTE_SECONDS

    for hours in (0.5, 10):  # 30 minutes, then 10 hours (12 GiB of float audio before the cut)
        data = long_note_midi(tmp_path, hours * 3600)
        assert len(data) < 50
        samples = render_audio(symusic.Score.from_midi(data), SR, channels=1)
        # The note is cut MAX_NOTE_SECONDS after its onset; then one second of ring-out.
        assert abs(len(samples) - (MAX_NOTE_SECONDS + 1) * SR) <= 1
        assert np.abs(samples[-SR // 10 :]).max() < np.abs(samples).max() / 100  # died away


def test_a_render_stops_at_max_seconds(tmp_path):
    from hf_music.audio import PianoRenderer

    score = symusic.Score.from_midi(long_note_midi(tmp_path, 1.0, then=10 * 3600))  # ten hours of silence
    with PianoRenderer(SR, channels=1, max_seconds=5) as renderer:
        renderer.finish(score)
        assert renderer.truncated and abs(len(renderer.samples()) - 6 * SR) <= 1  # 5 s and the ring-out


def test_silence_before_a_late_first_note_stays_silent():
    from hf_music.audio import PerformanceNotes, PianoRenderer

    # The Space's first streamed chunk of a piece whose first note comes at 3 s: FluidSynth's
    # ~1e-8 floor was scaled to -1 dBFS, a loud pop.
    notes = PerformanceNotes(np.array([3.0]), np.array([4.0]), np.array([60]), np.array([100]))
    with PianoRenderer(44100, channels=2) as renderer:
        renderer.render(notes, 1.0)
        assert not renderer.samples().any()
        renderer.finish(notes)
        whole = renderer.samples()
    assert not whole[: 3 * 44100].any()
    assert abs(20 * np.log10(np.abs(whole.astype(float)).max() / 32767) + 1.0) < 0.01  # the note: -1 dBFS
