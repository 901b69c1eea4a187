"""Thin wrapper: the program is hf_music/commands/evaluate.py, also installed as `hf-music evaluate`.

See `python scripts/evaluate.py --help` for every option.
"""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("evaluate"))
