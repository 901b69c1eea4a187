"""Thin wrapper: the program is hf_music/prepare.py, also installed as `hf-music prepare`.

See `python scripts/prepare_data.py --help` for every option.
"""

from hf_music.prepare import main

if __name__ == "__main__":
    main()
