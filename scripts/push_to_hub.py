"""Thin wrapper: the program is hf_music/commands/push.py, also installed as `hf-music push`.

See `python scripts/push_to_hub.py --help` for every option.
"""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("push"))
