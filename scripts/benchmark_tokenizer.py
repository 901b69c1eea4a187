"""Encode all of maestro-mini with hf_music's MidiTokenizer, miditok's MIDILike and a pretty_midi
reference encoder, in one run, single process, and print tokens/s, files/s and the ratios.

    python scripts/benchmark_tokenizer.py [--data ../shared/data/maestro-mini] [--repeats 3]

Timings include reading each file from disk (bytes already in the page cache) and parsing it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HF_MUSIC_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "tests"))  # the pretty_midi reference encoder lives with the tests


def best_time(encode, files, repeats):
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        tokens = sum(encode(f) for f in files)
        best = min(best, time.perf_counter() - started)
    return best, tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "maestro-mini")
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of N runs (the slow reference runs once)"
    )
    args = parser.parse_args()
    files = sorted(args.data.glob("**/*.mid*"))
    if not files:
        sys.exit(f"no MIDI files under {args.data}")

    from miditok import MIDILike, TokenizerConfig
    from pretty_midi_reference import reference_encode

    from hf_music import MidiTokenizer

    ours = MidiTokenizer()
    # MIDILike as close to the Music Transformer vocabulary as miditok allows: all 128 pitches,
    # 32 velocities, time shifts at 1/50 beat up to 2 beats (10 ms .. 1 s at 120 qpm).
    miditok = MIDILike(
        TokenizerConfig(
            pitch_range=(0, 127), num_velocities=32, beat_res={(0, 2): 50}, use_sustain_pedals=False
        )
    )

    def encode_ours(path):
        return len(ours.encode_midi(path, add_special_tokens=False))

    def encode_miditok(path):
        seqs = miditok.encode(path)
        return sum(len(s.ids) for s in (seqs if isinstance(seqs, list) else [seqs]))

    def encode_reference(path):
        return len(reference_encode(path))

    rows = []
    for name, encode, repeats in [
        ("hf_music MidiTokenizer", encode_ours, args.repeats),
        ("miditok MIDILike", encode_miditok, args.repeats),
        ("pretty_midi reference", encode_reference, 1),
    ]:
        encode(files[0])  # warm-up: imports, caches
        seconds, tokens = best_time(encode, files, repeats)
        rows.append((name, seconds, tokens))

    ours_seconds = rows[0][1]
    print(f"{len(files)} files from {args.data}, single process, best of {args.repeats}\n")
    print("| encoder | seconds | tokens | tokens/s | files/s | hf_music speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, tokens in rows:
        print(
            f"| {name} | {seconds:.3f} | {tokens:,} | {tokens / seconds:,.0f} | {len(files) / seconds:,.1f} "
            f"| {seconds / ours_seconds:.1f}x |"
        )


if __name__ == "__main__":
    main()
