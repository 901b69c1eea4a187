"""`python -m hf_music`: the generate command (hf_music/commands/generate.py), as `hf-music generate`."""

from hf_music.commands.generate import main

if __name__ == "__main__":
    main()
