"""Hearing and seeing a piece: General MIDI soundfont rendering and a piano-roll image.

Audio goes through FluidSynth (Debian's ``libfluidsynth3`` driven by ``pyfluidsynth``) and a GM
soundfont: Debian's ``musescore-general-soundfont-small`` (MuseScore General Lite, whose piano is
a sampled Steinway D; 39 MB) when installed, else ``timgm6mb-soundfont`` (6 MB) or another GM
bank. symusic 0.6's own ``Synthesizer.render`` fails to return its array with numpy 2. Both are
optional: `find_soundfont` and `render_audio` say clearly what is missing, and MIDI output never
depends on them. `PianoRenderer` renders a piece while it is being written (the Space streams).
"""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path

import numpy as np

from .music_transformer.tokenization_music_transformer import PerformanceNotes

# Looked for in this order when HF_MUSIC_SOUNDFONT is not set: the best piano first.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
NO_SOUNDFONT = (
    "no General MIDI soundfont found: install one (Debian/Ubuntu: apt install "
    "musescore-general-soundfont-small, or timgm6mb-soundfont) or set HF_MUSIC_SOUNDFONT to a .sf2/.sf3 file"
)


class AudioUnavailableError(RuntimeError):
    """Audio cannot be rendered here (no soundfont or no FluidSynth); MIDI output still works."""


def find_soundfont() -> Path | None:
    """The GM soundfont to use: $HF_MUSIC_SOUNDFONT when set (and only it), else the usual system paths."""
    override = os.environ.get("HF_MUSIC_SOUNDFONT")
    for candidate in [override] if override else SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def _note_arrays(piece):
    """(onset s, offset s, pitch, velocity) numpy arrays of a PerformanceNotes or a symusic Score."""
    if isinstance(piece, PerformanceNotes):
        return (np.asarray(piece.onset, np.float64), np.asarray(piece.offset, np.float64),
                np.asarray(piece.pitch).astype(int), np.asarray(piece.velocity).astype(int))  # fmt: skip
    score = piece.to("second")
    arrays = [track.notes.numpy() for track in score.tracks if len(track.notes)]
    if not arrays:
        empty = np.zeros(0)
        return empty, empty, empty.astype(int), empty.astype(int)
    onset = np.concatenate([a["time"] for a in arrays]).astype(np.float64)
    offset = onset + np.concatenate([a["duration"] for a in arrays]).astype(np.float64)
    pitch = np.concatenate([a["pitch"] for a in arrays]).astype(int)
    velocity = np.concatenate([a["velocity"] for a in arrays]).astype(int)
    return onset, offset, pitch, velocity


# Bounds on what is rendered, whatever the MIDI file says (a 36-byte file can hold a 10-hour note,
# 12 GiB of float audio): a piano note has died away well within 30 s, so longer notes are cut
# there, and a render stops after 20 minutes of audio (about 0.4 GB of float samples in stereo).
MAX_NOTE_SECONDS = 30.0
MAX_AUDIO_SECONDS = 20 * 60.0
SAMPLE_RATE, CHANNELS = 44100, 2  # what the command line and the Space write: 44.1 kHz stereo


def _sounding_arrays(piece):
    """`_note_arrays` with each note cut MAX_NOTE_SECONDS after its onset."""
    onset, offset, pitch, velocity = _note_arrays(piece)
    return onset, np.minimum(offset, onset + MAX_NOTE_SECONDS), pitch, velocity


# Loaded synthesizers, kept for the process: loading MuseScore General's compressed piano takes
# seconds. A renderer borrows one (a second one is loaded only when two render at once).
_idle_synths: dict[tuple[str, int], list] = {}
_synths_lock = threading.Lock()
DEFAULT_GAIN = 0.3  # FluidSynth's level; the float output never clips and is normalised at the end
_write_float = None
DRUM_CHANNEL = 9  # General MIDI's percussion channel (bank 128 in a soundfont)


def channels_of_tracks(score) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """A FluidSynth channel per track, and each channel's (bank, program): each track plays its own
    General MIDI program; tracks of one program share a channel, drums go to channel 9 (bank 128).
    Past the 15 melodic channels, programs share channels round-robin (a rare corpus has more)."""
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    channel_of_program, channels, settings = {}, [], {}
    for track in score.tracks:
        key = (128, 0) if track.is_drum else (0, int(track.program))
        if key not in channel_of_program:
            channel = DRUM_CHANNEL if track.is_drum else melodic[len(settings) % len(melodic)]
            channel_of_program[key] = channel
            settings.setdefault(channel, key)
        channels.append(channel_of_program[key])
    return channels, settings


def _note_channels(piece) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """The channel of each note, in `_note_arrays`' order, and each channel's (bank, program):
    PerformanceNotes play channel 0's piano, a Score's tracks their own programs."""
    if isinstance(piece, PerformanceNotes):
        return np.zeros(len(piece.pitch), int), {0: (0, 0)}
    track_channels, settings = channels_of_tracks(piece)
    channel = np.repeat(np.asarray(track_channels, int), [len(track.notes) for track in piece.tracks])
    return channel.astype(int), settings or {0: (0, 0)}


def _float_samples(synth, frames: int) -> np.ndarray:
    """(frames, 2) float32 from FluidSynth: no 16-bit clipping or dither before normalisation
    (pyfluidsynth's get_samples gives dithered int16 only)."""
    global _write_float
    if _write_float is None:
        from ctypes import c_int, c_void_p

        import fluidsynth

        _write_float = fluidsynth.cfunc("fluid_synth_write_float", c_int, ("synth", c_void_p, 1),
                                        ("len", c_int, 1), ("lout", c_void_p, 1), ("loff", c_int, 1),
                                        ("lincr", c_int, 1), ("rout", c_void_p, 1), ("roff", c_int, 1),
                                        ("rincr", c_int, 1))  # fmt: skip
    out = np.zeros((frames, 2), np.float32)
    if frames > 0:
        address = out.ctypes.data  # interleaved: left at 0, right at 1, both with stride 2
        _write_float(synth.synth, frames, address, 0, 2, address, 1, 2)
    return out


def _resolve_soundfont(soundfont) -> Path:
    if soundfont is None:  # $HF_MUSIC_SOUNDFONT, when set, is the only choice (and named if missing)
        soundfont = os.environ.get("HF_MUSIC_SOUNDFONT") or find_soundfont()
    soundfont = Path(soundfont) if soundfont else None
    if soundfont is None or not soundfont.is_file():
        raise AudioUnavailableError(
            NO_SOUNDFONT if soundfont is None else f"soundfont {soundfont} does not exist"
        )
    return soundfont


def _borrow_synth(soundfont: Path, sample_rate: int):
    try:
        import fluidsynth
    except (ImportError, OSError) as error:  # OSError: pyfluidsynth present, libfluidsynth missing
        raise AudioUnavailableError(
            f"FluidSynth is not available ({error}): pip install pyfluidsynth and apt install libfluidsynth3"
        ) from error
    key = (str(soundfont.resolve()), int(sample_rate))
    with _synths_lock:
        if _idle_synths.get(key):
            return key, _idle_synths[key].pop()
    # Dynamic sample loading reads (and, for .sf3, decompresses) only the piano's samples.
    synth = fluidsynth.Synth(gain=DEFAULT_GAIN, samplerate=float(sample_rate),
                             **{"synth.dynamic-sample-loading": 1, "synth.chorus.active": 0})  # fmt: skip
    font = synth.sfload(str(soundfont))
    if font < 0:
        synth.delete()
        raise AudioUnavailableError(f"FluidSynth cannot read the soundfont {soundfont}")
    synth.hf_music_font = font  # for the programs a renderer selects per channel
    synth.program_select(0, font, 0, 0)
    # A fresh synth played the first strike of each sample differently (30 dB apart from later
    # strikes): strike every key at every velocity layer once, so that all pieces sound alike.
    for velocity in range(1, 128, 4):
        for low in range(21, 109, 11):  # 11 keys at a time stay under the 256-voice polyphony
            for pitch in range(low, low + 11):
                synth.noteon(0, pitch, velocity)
            _float_samples(synth, FLUID_BLOCK)
            synth.all_sounds_off(0)
    _return_synth(key, synth, sample_rate, FLUID_BLOCK * 16)
    with _synths_lock:
        _idle_synths[key].remove(synth)
    return key, synth


FLUID_BLOCK = 64  # FluidSynth renders in blocks of 64 frames and applies events at block starts


def _return_synth(key, synth, sample_rate: int, frames: int) -> None:
    """Silence the synth (notes, then the reverb's tail) and put it back for the next piece,
    at a block boundary, so that every piece's events fall on the same block grid."""
    for channel in range(16):
        synth.all_notes_off(channel)
    _float_samples(synth, -frames % FLUID_BLOCK)
    block = FLUID_BLOCK * (sample_rate // (10 * FLUID_BLOCK))  # about 0.1 s
    for _ in range(50):  # at most 5 s of tail
        if np.abs(_float_samples(synth, block)).max(initial=0) < 1e-5:
            break
    with _synths_lock:
        _idle_synths.setdefault(key, []).append(synth)


class PianoRenderer:
    """Audio of a piece rendered in time order, so it can be heard while it is being written.

    Each `render(notes, until)` plays the note-ons and note-offs that lie before ``until``
    seconds (notes still sounding at ``until`` keep sounding: their release comes in a later
    call), and `finish(notes)` plays the rest plus one second of ring-out. Feeding a piece in
    several calls gives the same samples as one call. Use as a context manager (or `close`).
    Notes sound at most MAX_NOTE_SECONDS, and nothing past ``max_seconds`` is rendered
    (`truncated` says whether the piece went on).
    """

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, soundfont: str | os.PathLike | None = None,
        channels: int = CHANNELS, max_seconds: float = MAX_AUDIO_SECONDS,
    ):  # fmt: skip
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        self.sample_rate, self.channels = int(sample_rate), channels
        self._key, self._synth = _borrow_synth(_resolve_soundfont(soundfont), self.sample_rate)
        self._frame = 0  # frames rendered so far
        self._last_frame = round(max_seconds * self.sample_rate)  # the ring-out may follow it
        self.truncated = False  # whether the piece went on past max_seconds
        self._chunks: list[np.ndarray] = []  # (frames, 2) float32 from FluidSynth
        self._programs: dict[int, tuple[int, int]] = {}  # channel -> (bank, program) selected

    def render(self, notes, until: float) -> None:
        """Play every event of ``notes`` (PerformanceNotes or Score) before ``until`` seconds."""
        self._play(notes, round(until * self.sample_rate))

    def finish(self, notes) -> None:
        """Play the remaining events of the complete piece, then one second of ring-out."""
        onset, offset, _, _ = _sounding_arrays(notes)
        end = max(offset.max(initial=0.0), onset.max(initial=0.0))
        self._play(notes, round(end * self.sample_rate) + 1)
        self._chunks.append(_float_samples(self._synth, self.sample_rate))
        self._frame += self.sample_rate

    def _select_programs(self, settings: dict[int, tuple[int, int]]) -> None:
        for channel, (bank, program) in settings.items():
            if self._programs.get(channel) != (bank, program):
                self._synth.program_select(channel, self._synth.hf_music_font, bank, program)
                self._programs[channel] = (bank, program)

    def _play(self, notes, stop_frame: int) -> None:
        if stop_frame > self._last_frame:
            self.truncated, stop_frame = True, self._last_frame
        onset, offset, pitch, velocity = _sounding_arrays(notes)
        channel, settings = _note_channels(notes)
        self._select_programs(settings)
        # One event list, sorted by time with note-offs first at equal times (a repeated key restrikes).
        frames = np.round(np.concatenate([offset, onset]) * self.sample_rate).astype(np.int64)
        is_on = np.concatenate([np.zeros(len(offset), bool), np.ones(len(onset), bool)])
        keys, channels = np.concatenate([pitch, pitch]), np.concatenate([channel, channel])
        velocities = np.concatenate([np.zeros(len(offset), int), velocity])
        pending = (frames >= self._frame) & (frames < stop_frame)  # earlier events were played before
        order = np.flatnonzero(pending)[np.lexsort((is_on[pending], frames[pending]))]
        synth = self._synth
        for frame, on, key, vel, ch in zip(frames[order].tolist(), is_on[order].tolist(), keys[order].tolist(),
                                           velocities[order].tolist(), channels[order].tolist(), strict=True):  # fmt: skip
            if frame > self._frame:
                self._chunks.append(_float_samples(synth, frame - self._frame))
                self._frame = frame
            if on:
                synth.noteon(ch, key, max(1, vel))
            else:
                synth.noteoff(ch, key)
        if stop_frame > self._frame:
            self._chunks.append(_float_samples(synth, stop_frame - self._frame))
            self._frame = stop_frame

    def samples(self, peak_dbfs: float | None = None) -> np.ndarray:
        """The audio so far as int16, (frames, 2) for stereo or (frames,) for mono, normalised to
        ``peak_dbfs`` (PEAK_DBFS by default), but never amplified more than a quiet note would be:
        a stretch of silence (FluidSynth's ~1e-8 floor) stays silent instead of becoming a pop."""
        mixed = [chunk if self.channels == 2 else chunk.sum(axis=1) / 2 for chunk in self._chunks]
        peak = max((float(np.abs(chunk).max(initial=0.0)) for chunk in mixed), default=0.0)
        gain = 32767 * 10 ** ((PEAK_DBFS if peak_dbfs is None else peak_dbfs) / 20) / max(peak, QUIET_PEAK)
        out = np.empty((sum(map(len, mixed)), 2)[: self.channels], np.int16)
        start = 0  # chunk by chunk: no float64 copy of the whole piece (up to 20 minutes of it)
        for chunk in mixed:
            out[start : start + len(chunk)] = np.round(chunk * gain)
            start += len(chunk)
        return out

    def close(self) -> None:
        if self._synth is not None:
            _return_synth(self._key, self._synth, self.sample_rate, self._frame)
            self._synth = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def render_audio(
    piece, sample_rate: int = SAMPLE_RATE, soundfont: str | os.PathLike | None = None, channels: int = CHANNELS,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> np.ndarray:  # fmt: skip
    """Render a PerformanceNotes (on a GM piano) or a symusic Score (each track on its own GM
    program, drums on channel 10) to int16 at `sample_rate`.

    Stereo (frames, 2) by default, (frames,) with ``channels=1``; at most ``max_seconds`` and a
    second of ring-out, each note at most MAX_NOTE_SECONDS. The result is normalised to a peak of
    PEAK_DBFS. Raises AudioUnavailableError naming what is missing (soundfont or FluidSynth).
    """
    with PianoRenderer(sample_rate, soundfont, channels, max_seconds) as renderer:
        renderer.finish(piece)
        return renderer.samples()


PEAK_DBFS = -1.0  # loud, with headroom for players that resample
# FluidSynth's float peak (at DEFAULT_GAIN) of one middle C at velocity 40: quieter audio is
# raised no more than that note would be (silence renders at ~1e-8, a velocity-100 C at 0.049).
QUIET_PEAK = 0.01


def normalize_peak(samples: np.ndarray, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Samples (any scale) as int16, scaled so that the loudest one sits at `peak_dbfs` (silence stays silence)."""
    samples = np.asarray(samples, np.float64)
    peak = np.abs(samples).max(initial=0.0)
    if peak == 0:
        return samples.astype(np.int16)
    target = 32767 * 10 ** (peak_dbfs / 20)
    return np.round(samples * (target / peak)).astype(np.int16)


def write_wav(samples: np.ndarray, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> str:
    """Write int16 samples as a WAV file, mono for (frames,), stereo for (frames, 2); returns the path."""
    path = os.fspath(path)
    samples = np.asarray(samples)
    with wave.open(path, "wb") as out:
        out.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return path


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """Scientific pitch notation: 60 is C4 (middle C), 21 is A0, 108 is C8."""
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


def piano_roll(piece, frames_per_second: int = 50) -> np.ndarray:
    """A (128 pitches, frames) velocity matrix of the piece, the lowest pitch in row 0."""
    onset, offset, pitch, velocity = _note_arrays(piece)
    end = int(np.ceil((offset.max() if len(offset) else 0) * frames_per_second)) + 1
    roll = np.zeros((128, end), np.uint8)
    start = np.floor(onset * frames_per_second).astype(int)
    stop = np.maximum(start + 1, np.ceil(offset * frames_per_second).astype(int))
    for p, a, b, v in zip(pitch.tolist(), start.tolist(), stop.tolist(), velocity.tolist(), strict=True):
        roll[p, a:b] = np.maximum(roll[p, a:b], v)
    return roll


def piano_roll_figure(
    piece, title: str | None = None, prompt_seconds: float | None = None, total_seconds: float | None = None
):
    """A matplotlib Figure of the piano roll (seconds x note names), the prompt's end marked if given.

    ``total_seconds`` fixes the time axis, so that a piece drawn while it is written grows
    from left to right instead of being stretched.
    """
    # A bare Figure, not pyplot's: nothing global keeps it alive (a long-running Space makes thousands).
    from matplotlib.figure import Figure

    roll = piano_roll(piece)
    used = np.flatnonzero(roll.any(axis=1))
    low, high = (int(used.min()) - 2, int(used.max()) + 3) if len(used) else (21, 109)
    fig = Figure(figsize=(10, 3.2), dpi=100)
    ax = fig.subplots()
    seconds = roll.shape[1] / 50
    silent_white = np.ma.masked_equal(roll[low:high], 0)  # masked cells show the white axes background
    ax.imshow(silent_white, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=127,
              extent=(0, seconds, low - 0.5, high - 0.5), interpolation="nearest")  # fmt: skip
    if total_seconds:
        ax.set_xlim(0, max(total_seconds, seconds))
    if prompt_seconds:
        ax.axvline(prompt_seconds, color="tab:blue", linestyle="--", linewidth=1, label="end of prompt")
        ax.legend(loc="upper right", fontsize=8)
    octave_cs = [p for p in range(0, 128, 12) if low <= p < high] or [60]
    ax.set_yticks(octave_cs, [note_name(p) for p in octave_cs])
    ax.set_xlabel("seconds")
    ax.set_ylabel("note")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "AudioUnavailableError",
    "PianoRenderer",
    "find_soundfont",
    "note_name",
    "piano_roll",
    "piano_roll_figure",
    "render_audio",
    "write_wav",
]
