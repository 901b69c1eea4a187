"""Files shipped inside the package: demo prompts (MAESTRO, CC BY-NC-SA 4.0)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
PROMPTS_DIR = ASSETS / "prompts"


def bundled_prompts() -> dict[str, Path]:
    """Name -> path of the bundled MIDI prompts (see assets/prompts/README.md for attribution)."""
    return {path.stem: path for path in sorted(PROMPTS_DIR.glob("*.mid"))}


DEFAULT_MODEL_DIR = ASSETS / "default_model"


def load_default_model(device=None):
    """(model, tokenizer) of the checkpoint embedded in the package, loaded offline."""
    from .modeling_music_transformer import MusicTransformerForCausalLM
    from .tokenization_music_transformer import MidiTokenizer

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"no embedded default model at {DEFAULT_MODEL_DIR}; pass a model folder or Hub id instead"
        )
    model = MusicTransformerForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, use_safetensors=True)
    tokenizer = MidiTokenizer.from_pretrained(DEFAULT_MODEL_DIR)
    return (model.to(device) if device else model).eval(), tokenizer


def load_model(name_or_path: str | None = None, device=None):
    """(model, tokenizer) from a checkpoint folder or Hub id, or the embedded default for None.

    trust_remote_code=True: a checkpoint carries the code it was saved with, so one made by
    another hf_music version loads as it was trained.
    """
    if name_or_path is None:
        return load_default_model(device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(name_or_path, trust_remote_code=True, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
    return (model.to(device) if device else model).eval(), tokenizer
