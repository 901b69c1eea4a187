"""The `hf-music` command: one entry point, a sub-command per program.

    hf-music generate --seconds 30 --seed 0 --out piece.mid     # = python -m hf_music
    hf-music train --tokens_file data/maestro-v3.0.0.tokens.npz --max_minutes 30 ...
    hf-music evaluate --model runs/x/best --tokens_file data/maestro-v3.0.0.tokens.npz --split test
    hf-music push --checkpoint runs/x/best --repo_id USER/NAME
    hf-music prepare --maestro_zip maestro-v3.0.0-midi.zip --out data/maestro-v3.0.0.tokens.npz
    hf-music export-web --out web/        # the page that composes in the browser; python -m http.server

`hf-music COMMAND --help` lists every option of a command. train and prepare (and evaluate of MIDI
files) need the `train` extra (pip install -e '.[train]'); without it they say so in one line.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "generate": ("hf_music.commands.generate", "compose piano music with a Music Transformer (MIDI and WAV)"),
    "train": ("hf_music.commands.train", "train or fine-tune a Music Transformer with Accelerate"),
    "evaluate": (
        "hf_music.commands.evaluate",
        "NLL and music statistics of a checkpoint on a held-out split",
    ),
    "push": ("hf_music.commands.push", "publish a checkpoint with its model card to the Hugging Face Hub"),
    "prepare": ("hf_music.commands.prepare", "tokenize a corpus once into a token pack"),
    "export-web": (
        "hf_music.commands.export_web",
        "write the in-browser page (onnxruntime-web) for a checkpoint",
    ),
}


# The modules of the optional extras (pyproject.toml): a command missing one says which extra to install.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("accelerate", "datasets", "tensorboard", "miditok"), "train"),
    **dict.fromkeys(("onnx", "onnxscript", "onnxruntime"), "onnx"),
}


def run(command: str, argv=None) -> int:
    """Run COMMAND's main(argv); a damaged checkpoint or token pack, or a module of an extra
    that is not installed (the README's first install has only the audio extra), is one line and
    status 1, not a traceback."""
    from .resources import CheckpointError
    from .token_pack import TokenPackError

    try:
        result = importlib.import_module(COMMANDS[command][0]).main(argv)
    except (CheckpointError, TokenPackError) as error:  # a damaged checkpoint or token pack, named
        print(f"hf-music {command}: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"hf-music {command}: needs the {extra} extra ({error.name} is not installed): "
            f"pip install -e '.[{extra}]' (from a checkout) or pip install 'hf_music[{extra}]'",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


def usage() -> str:
    lines = [
        "usage: hf-music COMMAND [options]   (hf-music COMMAND --help for every option)",
        "",
        "commands:",
    ]
    return "\n".join(lines + [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"hf-music: unknown command {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    sys.argv = [f"hf-music {argv[0]}", *argv[1:]]  # what argparse shows as the program's name
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
