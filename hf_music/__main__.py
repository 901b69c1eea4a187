"""`python -m hf_music`: the generate command (hf_music/commands/generate.py), as `hf-music generate`."""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("generate"))
