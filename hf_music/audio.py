"""Hearing and seeing a piece: General MIDI soundfont rendering and a piano-roll image.

Audio goes through FluidSynth (Debian's ``libfluidsynth3`` driven by ``pyfluidsynth``) and a GM
soundfont such as Debian's ``timgm6mb-soundfont``: symusic 0.6's own ``Synthesizer.render``
fails to return its array with numpy 2. Both are optional: `find_soundfont` and
`render_audio` say clearly what is missing, and MIDI output never depends on them.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

# Looked for in this order when HF_MUSIC_SOUNDFONT is not set.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
NO_SOUNDFONT = (
    "no General MIDI soundfont found: install one (Debian/Ubuntu: apt install timgm6mb-soundfont) "
    "or set HF_MUSIC_SOUNDFONT to a .sf2 file"
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


def _note_arrays(score):
    """(onset s, offset s, pitch, velocity) of every note of a symusic Score, numpy arrays."""
    score = score.to("second")
    arrays = [track.notes.numpy() for track in score.tracks if len(track.notes)]
    if not arrays:
        empty = np.zeros(0)
        return empty, empty, empty.astype(int), empty.astype(int)
    onset = np.concatenate([a["time"] for a in arrays]).astype(np.float64)
    offset = onset + np.concatenate([a["duration"] for a in arrays]).astype(np.float64)
    pitch = np.concatenate([a["pitch"] for a in arrays]).astype(int)
    velocity = np.concatenate([a["velocity"] for a in arrays]).astype(int)
    return onset, offset, pitch, velocity


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


def render_audio(
    score, sample_rate: int = 22050, soundfont: str | os.PathLike | None = None, gain: float = 0.6
):
    """Render a symusic Score to a mono int16 array at `sample_rate`, each track on its GM program.

    The result is normalised to a peak of PEAK_DBFS (FluidSynth's own level left quiet pieces at
    about -12 dBFS). Raises AudioUnavailableError naming what is missing (soundfont or FluidSynth).
    """
    if soundfont is None:  # $HF_MUSIC_SOUNDFONT, when set, is the only choice (and named if missing)
        soundfont = os.environ.get("HF_MUSIC_SOUNDFONT") or find_soundfont()
    soundfont = Path(soundfont) if soundfont else None
    if soundfont is None or not soundfont.is_file():
        raise AudioUnavailableError(
            NO_SOUNDFONT if soundfont is None else f"soundfont {soundfont} does not exist"
        )
    try:
        import fluidsynth
    except (ImportError, OSError) as error:  # OSError: pyfluidsynth present, libfluidsynth missing
        raise AudioUnavailableError(
            f"FluidSynth is not available ({error}): pip install pyfluidsynth and apt install libfluidsynth3"
        ) from error

    onset, offset, pitch, velocity = _note_arrays(score)
    track_channels, settings = channels_of_tracks(score)
    channel = np.repeat(track_channels, [len(t.notes) for t in score.tracks]).astype(int)
    # One event list, sorted by time with note-offs first at equal times (a repeated key restrikes).
    times = np.concatenate([offset, onset])
    is_on = np.concatenate([np.zeros(len(offset), bool), np.ones(len(onset), bool)])
    keys = np.concatenate([pitch, pitch])
    channels = np.concatenate([channel, channel])
    velocities = np.concatenate([np.zeros(len(offset), int), velocity])
    order = np.lexsort((is_on, times))
    frames = np.round(times[order] * sample_rate).astype(np.int64)

    synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
    try:
        font = synth.sfload(str(soundfont))
        for number, (bank, program) in (settings or {0: (0, 0)}).items():
            synth.program_select(number, font, bank, program)
        chunks, position = [], 0
        for frame, on, key, vel, ch in zip(frames.tolist(), is_on[order].tolist(), keys[order].tolist(),
                                           velocities[order].tolist(), channels[order].tolist(), strict=True):  # fmt: skip
            if frame > position:
                chunks.append(synth.get_samples(frame - position))
                position = frame
            if on:
                synth.noteon(ch, key, max(1, vel))
            else:
                synth.noteoff(ch, key)
        chunks.append(synth.get_samples(sample_rate))  # one second for the last releases to ring out
    finally:
        synth.delete()
    stereo = np.concatenate(chunks).astype(np.int32).reshape(-1, 2)
    return normalize_peak(stereo.sum(axis=1) / 2)


PEAK_DBFS = -1.0  # loud, with headroom for players that resample


def normalize_peak(samples: np.ndarray, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """int16 samples scaled so that the loudest one sits at `peak_dbfs` (silence stays silence)."""
    samples = np.asarray(samples, np.float64)
    peak = np.abs(samples).max(initial=0.0)
    if peak == 0:
        return samples.astype(np.int16)
    target = 32767 * 10 ** (peak_dbfs / 20)
    return np.round(samples * (target / peak)).astype(np.int16)


def write_wav(samples: np.ndarray, path: str | os.PathLike, sample_rate: int = 22050) -> str:
    """Write mono int16 samples as a WAV file; returns the path."""
    path = os.fspath(path)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return path


def piano_roll(score, frames_per_second: int = 50) -> np.ndarray:
    """A (128 pitches, frames) velocity matrix of the piece, the lowest pitch in row 0."""
    onset, offset, pitch, velocity = _note_arrays(score)
    end = int(np.ceil((offset.max() if len(offset) else 0) * frames_per_second)) + 1
    roll = np.zeros((128, end), np.uint8)
    start = np.floor(onset * frames_per_second).astype(int)
    stop = np.maximum(start + 1, np.ceil(offset * frames_per_second).astype(int))
    for p, a, b, v in zip(pitch.tolist(), start.tolist(), stop.tolist(), velocity.tolist(), strict=True):
        roll[p, a:b] = np.maximum(roll[p, a:b], v)
    return roll


def piano_roll_figure(score, title: str | None = None, prompt_seconds: float | None = None):
    """A matplotlib Figure of the piano roll (seconds x pitch), the prompt's end marked if given."""
    # A bare Figure, not pyplot's: nothing global keeps it alive (a long-running Space makes thousands).
    from matplotlib.figure import Figure

    roll = piano_roll(score)
    used = np.flatnonzero(roll.any(axis=1))
    low, high = (int(used.min()) - 2, int(used.max()) + 3) if len(used) else (21, 109)
    fig = Figure(figsize=(10, 3.2), dpi=100)
    ax = fig.subplots()
    seconds = roll.shape[1] / 50
    silent_white = np.ma.masked_equal(roll[low:high], 0)  # masked cells show the white axes background
    ax.imshow(silent_white, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=127,
              extent=(0, seconds, low - 0.5, high - 0.5), interpolation="nearest")  # fmt: skip
    if prompt_seconds:
        ax.axvline(prompt_seconds, color="tab:blue", linestyle="--", linewidth=1, label="end of prompt")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "AudioUnavailableError",
    "find_soundfont",
    "piano_roll",
    "piano_roll_figure",
    "render_audio",
    "write_wav",
]
