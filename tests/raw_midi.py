"""Standard MIDI Files written byte by byte, for inputs symusic cannot be asked to write: time
bombs (a tiny file spanning years), NOTE_ONs never closed, headers that miscount their tracks."""

from __future__ import annotations

import struct

LONGEST_DELTA = 0x0FFFFFFF  # the largest delta time a MIDI variable-length quantity holds (2**28 - 1)


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, the high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def event(delta: int, *data: int) -> bytes:
    return vlq(delta) + bytes(data)


END_OF_TRACK = event(0, 0xFF, 0x2F, 0)


def tempo(delta: int, us_per_quarter: int) -> bytes:
    return event(delta, 0xFF, 0x51, 3, *us_per_quarter.to_bytes(3, "big"))


def smf(tracks: list[bytes], tpq: int = 480, fmt: int = 1, declared: int | None = None) -> bytes:
    """A file of the given track bodies (End of Track appended); ``declared`` overrides the header's count."""
    count = len(tracks) if declared is None else declared
    chunks = (body + END_OF_TRACK for body in tracks)
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, fmt, count, tpq)
        + b"".join(b"MTrk" + struct.pack(">I", len(chunk)) + chunk for chunk in chunks)
    )


def note(delta: int, pitch: int, length: int, velocity: int = 64, channel: int = 0) -> bytes:
    return event(delta, 0x90 | channel, pitch, velocity) + event(length, 0x80 | channel, pitch, 0)


def late_note_bomb() -> bytes:
    """44 bytes: one note at tick 2**28 - 1, one tick per quarter, the slowest tempo: 143 years."""
    return smf([tempo(0, 0xFFFFFF) + note(LONGEST_DELTA, 60, 1)], tpq=1)


def long_note_bomb() -> bytes:
    """A note held 2**28 - 1 ticks at 96 per quarter and 120 qpm: 16 days."""
    return smf([note(0, 60, LONGEST_DELTA)], tpq=96)


def fast_tempo_bomb() -> bytes:
    """Two minutes of music over 2**28 quarter notes: a tempo of one microsecond per quarter."""
    return smf([tempo(0, 1) + note(0, 60, 100) + note(LONGEST_DELTA, 62, 100)], tpq=1)
