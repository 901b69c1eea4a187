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


def load_model(name_or_path: str | None = None, device=None, trust_remote_code: bool = False):
    """(model, tokenizer) from a checkpoint folder or Hub id, or the embedded default for None.

    A checkpoint whose config says ``model_type: music_transformer`` is loaded with this
    package's own classes: code files inside the checkpoint are never run. Any other model
    needs ``trust_remote_code=True`` (as in transformers), which runs the checkpoint's code.
    """
    if name_or_path is None:
        return load_default_model(device)
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import cached_file

    from .modeling_music_transformer import MusicTransformerForCausalLM
    from .tokenization_music_transformer import MidiTokenizer

    config_file = cached_file(name_or_path, "config.json")
    model_type = json.loads(Path(config_file).read_text(encoding="utf-8")).get("model_type")
    if model_type == MusicTransformerForCausalLM.config_class.model_type:
        model = MusicTransformerForCausalLM.from_pretrained(name_or_path, use_safetensors=True)
        tokenizer = MidiTokenizer.from_pretrained(name_or_path)
    elif trust_remote_code:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, trust_remote_code=True, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
    else:
        raise ValueError(
            f"{name_or_path} holds a {model_type!r} model, not a music_transformer: loading it would run "
            "code from the checkpoint; pass trust_remote_code=True (--trust_remote_code) if you trust it"
        )
    return (model.to(device) if device else model).eval(), tokenizer
