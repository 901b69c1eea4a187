"""Thin wrapper: the program is hf_music/commands/prepare.py, also installed as `hf-music prepare`.

See `python scripts/prepare_data.py --help` for every option.
"""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("prepare"))
