"""Generate piano music with a Music Transformer: the same command as `python -m hf_music`.

    python scripts/generate.py --out piece.mid                       # the embedded default model
    python scripts/generate.py --model user/music-transformer --prompt start.mid --num 3 --temperature 0.9

See `python scripts/generate.py --help` for every option.
"""

import sys

from hf_music.cli import run

if __name__ == "__main__":
    sys.exit(run("generate"))
