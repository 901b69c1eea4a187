"""The programs `hf-music` runs (hf_music/cli.py dispatches to them), each a module with a `main(argv)`
that parses its options and calls the library: generate (generation, audio), train (Accelerate,
windows, run_record), evaluate (evaluation), push (hub) and prepare (data, token_pack). Library
modules never import from here; `scripts/*.py` are thin wrappers of the same commands."""
