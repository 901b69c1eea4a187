"""Thin wrapper: the program is hf_music/evaluate.py, also installed as `hf-music evaluate`.

See `python scripts/evaluate.py --help` for every option.
"""

from hf_music.evaluate import main

if __name__ == "__main__":
    main()
