"""The code a checkpoint carries, as transformers keeps a model's files in one folder.

Every module here is self-contained (relative imports among themselves only, nothing else from
hf_music), because `save_pretrained` and `hf_music.hub` copy them byte for byte into checkpoints so
that ``trust_remote_code=True`` loads a checkpoint without hf_music: configuration_, modeling_ and
tokenization_music_transformer.py beside the weights, tokenization_miditok.py in a miditok
vocabulary's checkpoint, and grammar.py as ``custom_generate/generate.py``. After changing one,
refresh the embedded model's copies with one command (the weights stay as they are):

    python scripts/embed_default_model.py --checkpoint hf_music/assets/default_model

and `tests/test_resources.py::test_the_embedded_models_code_is_the_packages_byte_for_byte` pins them.
"""

from pathlib import Path

CODE_DIR = Path(__file__).resolve().parent
# Checkpoint path -> this folder's file it is a copy of.
CHECKPOINT_CODE = {
    "configuration_music_transformer.py": "configuration_music_transformer.py",
    "modeling_music_transformer.py": "modeling_music_transformer.py",
    "tokenization_music_transformer.py": "tokenization_music_transformer.py",
    "tokenization_miditok.py": "tokenization_miditok.py",  # a miditok vocabulary's checkpoints only
    "custom_generate/generate.py": "grammar.py",  # the performance vocabulary's checkpoints only
}
