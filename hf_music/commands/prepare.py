"""Tokenize a corpus once into a compact token pack (uint16, zlib, checksummed) for train.py and evaluate.py.

    python scripts/prepare_data.py --maestro_zip ../shared/data/maestro-v3.0.0-midi.zip \\
        --out data/maestro-v3.0.0.tokens.npz
    python scripts/prepare_data.py --midi_dir my_midis --validation_fraction 0.1 --out data/mine.tokens.npz

A pack needs only numpy to read (no datasets, no symusic), so it is what travels to a GPU
machine: the full MAESTRO v3.0.0 is 28.5M tokens in 26.8 MB. Bad files are skipped, counted
and named, as everywhere else.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hf_music import MidiTokenizer
from hf_music.token_pack import load_corpus


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--maestro_zip", help="maestro-v3.0.0-midi.zip (path or URL)")
    source.add_argument("--maestro_dir", help="extracted MAESTRO folder")
    source.add_argument("--midi_dir", help="any folder of MIDI files, split by a hash of each path")
    parser.add_argument("--maestro_version", default="v3.0.0")
    parser.add_argument("--validation_fraction", type=float, default=0.1, help="with --midi_dir")
    parser.add_argument("--test_fraction", type=float, default=0.0, help="with --midi_dir")
    parser.add_argument("--seed", type=int, default=0, help="with --midi_dir: the split seed")
    parser.add_argument("--license", default=None, help="the corpus's licence (MAESTRO: cc-by-nc-sa-4.0)")
    parser.add_argument("--num_proc", type=int, default=None)
    parser.add_argument("--out", required=True, help="the .npz token pack to write")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    started = time.perf_counter()
    pack = load_corpus(
        MidiTokenizer(), maestro=args.maestro_zip or args.maestro_dir, midi_dir=args.midi_dir,
        maestro_version=args.maestro_version, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, seed=args.seed, license=args.license, num_proc=args.num_proc,
    )  # fmt: skip
    path = pack.save(args.out)
    sizes = ", ".join(
        f"{name} {len(pack.offsets[name]) - 1} pieces / {pack.tokens[name].size:,} tokens"
        for name in pack.splits
    )
    print(
        f"wrote {path}: {path.stat().st_size / 1e6:.1f} MB, {sizes} in {time.perf_counter() - started:.1f} s"
    )
    print(f"sha256 {pack.info['corpus']['source_sha256']} of the source; every array's sha256 is in the pack")
    return path


if __name__ == "__main__":
    main()
