"""Thin wrapper: the program is hf_music/train.py, also installed as `hf-music train`.

See `python scripts/train.py --help` for every option.
"""

from hf_music.train import main

if __name__ == "__main__":
    main()
