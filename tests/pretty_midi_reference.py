"""An independent, deliberately plain reference encoder built on pretty_midi.

It reads MIDI with a different library (pretty_midi, float64 seconds) and implements the
encoding rules of MidiTokenizer with Python loops and per-note objects, so the two can be
compared note for note. It is also the slow baseline of scripts/benchmark_tokenizer.py.
"""

from __future__ import annotations

import math

import pretty_midi

SPECIALS = 3
NOTE_ON, NOTE_OFF, TIME_SHIFT = SPECIALS, SPECIALS + 128, SPECIALS + 256


def pedal_intervals(instrument, end_time):
    """(down, up) intervals of the sustain pedal: CC64 >= 64 is down."""
    intervals, down_at = [], None
    for cc in sorted(instrument.control_changes, key=lambda c: c.time):
        if cc.number != 64:
            continue
        if cc.value >= 64 and down_at is None:
            down_at = cc.time
        elif cc.value < 64 and down_at is not None:
            intervals.append((down_at, cc.time))
            down_at = None
    if down_at is not None:
        intervals.append((down_at, end_time))
    return intervals


def reference_notes(path, sustain_pedal=True):
    """[(onset_s, release_s, pitch, velocity)] of all non-drum instruments, pedal applied."""
    midi = pretty_midi.PrettyMIDI(str(path))
    end_time = midi.get_end_time()
    notes = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        pedals = pedal_intervals(instrument, end_time) if sustain_pedal else []
        for note in instrument.notes:
            release = note.end
            for down, up in pedals:
                if down <= release < up:
                    release = up
                    break
            notes.append((note.start, release, note.pitch, note.velocity))
    return notes


def reference_encode(path, step=0.01, max_shift=100, velocity_bins=32, sustain_pedal=True):
    """Token ids (without specials) following MidiTokenizer's documented rules."""
    quantized = []
    for onset, release, pitch, velocity in reference_notes(path, sustain_pedal):
        on = math.floor(onset / step + 0.5 + 1e-6)  # nearest step, halves up
        off = max(math.floor(release / step + 0.5 + 1e-6), on + 1)
        quantized.append([on, off, pitch, velocity])
    # A re-struck pitch ends the sounding note; a repeat within the same step is dropped.
    by_pitch = {}
    for note in quantized:
        by_pitch.setdefault(note[2], []).append(note)
    kept = []
    for notes in by_pitch.values():
        notes.sort(key=lambda n: n[0])
        for current, following in zip(notes, [*notes[1:], None], strict=True):
            if following is not None:
                current[1] = min(current[1], following[0])
            if current[1] > current[0]:
                kept.append(current)
    kept.sort(key=lambda n: (n[0], n[2]))

    events = []  # (time, group, pitch, sub, token)
    previous_bin = None
    for on, off, pitch, velocity in kept:
        events.append((off, 0, pitch, 0, NOTE_OFF + pitch))
        velocity_bin = velocity * velocity_bins // 128
        if velocity_bin != previous_bin:
            events.append((on, 1, pitch, 0, TIME_SHIFT + max_shift + velocity_bin))
            previous_bin = velocity_bin
        events.append((on, 1, pitch, 1, NOTE_ON + pitch))
    events.sort()

    ids, now = [], 0
    for time, _, _, _, token in events:
        gap = time - now
        while gap > 0:
            shift = min(gap, max_shift)
            ids.append(TIME_SHIFT + shift - 1)
            gap -= shift
        now = time
        ids.append(token)
    return ids
