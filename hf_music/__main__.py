"""`python -m hf_music`: the package's main job on its embedded default, offline.

Tokenizes a bundled MAESTRO performance into performance events, prints what it found and
renders the events back into a MIDI file.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from . import MidiTokenizer
from .resources import bundled_prompts


def main(argv: list[str] | None = None) -> None:
    prompts = bundled_prompts()
    parser = argparse.ArgumentParser(prog="python -m hf_music", description=__doc__)
    parser.add_argument(
        "--midi", default=next(iter(prompts)), help=f"a MIDI path or one of: {', '.join(prompts)}"
    )
    parser.add_argument("--out", default="hf_music_roundtrip.mid", help="where to write the re-rendered MIDI")
    args = parser.parse_args(argv)

    tokenizer = MidiTokenizer()
    source = prompts.get(args.midi, args.midi)
    started = time.perf_counter()
    ids = tokenizer.encode_midi(source)
    encoded = time.perf_counter()
    tokenizer.write_midi(ids, args.out)
    notes = tokenizer.ids_to_notes(ids)
    kinds = Counter(token.rsplit("_", 1)[0] for token in tokenizer.convert_ids_to_tokens(ids))
    print(
        f"{source}: {len(notes)} notes, {notes.offset.max(initial=0):.1f} s -> {len(ids)} tokens "
        f"in {1000 * (encoded - started):.1f} ms"
    )
    print("events: " + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common()))
    print("first events: " + " ".join(tokenizer.convert_ids_to_tokens(ids[:12])))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
