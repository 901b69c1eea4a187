"""Thin wrapper: the program is hf_music/commands/train.py, also installed as `hf-music train`.

See `python scripts/train.py --help` for every option.
"""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("train"))
