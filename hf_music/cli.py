"""The `hf-music` command: one entry point, a sub-command per program.

    hf-music generate --seconds 30 --seed 0 --out piece.mid     # = python -m hf_music
    hf-music train --tokens_file data/maestro-v3.0.0.tokens.npz --max_minutes 30 ...
    hf-music evaluate --model runs/x/best --tokens_file data/maestro-v3.0.0.tokens.npz --split test
    hf-music push --checkpoint runs/x/best --repo_id USER/NAME
    hf-music prepare --maestro_zip maestro-v3.0.0-midi.zip --out data/maestro-v3.0.0.tokens.npz

`hf-music COMMAND --help` lists every option of a command. train, evaluate, push and prepare
need the `train` extra (pip install "hf_music[train]").
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "generate": ("hf_music.__main__", "compose piano music with a Music Transformer (MIDI and WAV)"),
    "train": ("hf_music.train", "train or fine-tune a Music Transformer with Accelerate"),
    "evaluate": ("hf_music.evaluate", "NLL and music statistics of a checkpoint on a held-out split"),
    "push": ("hf_music.push", "publish a checkpoint with its model card to the Hugging Face Hub"),
    "prepare": ("hf_music.prepare", "tokenize a corpus once into a token pack"),
}


def usage() -> str:
    lines = [
        "usage: hf-music COMMAND [options]   (hf-music COMMAND --help for every option)",
        "",
        "commands:",
    ]
    return "\n".join(lines + [f"  {name:<9} {about}" for name, (_, about) in COMMANDS.items()])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"hf-music: unknown command {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sys.argv = [f"hf-music {argv[0]}", *argv[1:]]  # what argparse shows as the program's name
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
