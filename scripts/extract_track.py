"""Copy one named track of every MIDI file in a folder to another folder (e.g. POP909's PIANO tracks).

    python scripts/extract_track.py ../shared/data/pop909-sample /tmp/pop909_piano --track PIANO

Files without exactly one track of that name are skipped, counted and named.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_music.music_transformer.tokenization_music_transformer import MidiReadError, load_score


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--track", required=True, help="track name, compared without case or spaces")
    args = parser.parse_args(argv)
    args.target.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for path in sorted(p for p in args.source.rglob("*") if p.suffix.lower() in (".mid", ".midi")):
        try:
            score = load_score(path)
        except MidiReadError as error:
            skipped.append(str(error))
            continue
        tracks = [t for t in score.tracks if t.name.strip().lower() == args.track.strip().lower()]
        if len(tracks) != 1:
            skipped.append(f"{path}: {len(tracks)} tracks named {args.track}")
            continue
        single = score.copy()
        while len(single.tracks):
            single.tracks.pop()
        single.tracks.append(tracks[0])
        single.dump_midi(str(args.target / path.relative_to(args.source)))
        written += 1
    print(f"wrote {written} files to {args.target}; skipped {len(skipped)}", *skipped, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
