"""Generate piano music with a Music Transformer: the same command as `python -m hf_music`.

    python scripts/generate.py --out piece.mid                       # the embedded default model
    python scripts/generate.py --model user/music-transformer --prompt start.mid --num 3 --temperature 0.9

See `python scripts/generate.py --help` for every option.
"""

from hf_music.commands.generate import main

if __name__ == "__main__":
    main()
