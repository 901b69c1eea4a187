"""hf_music: the Music Transformer in the Hugging Face ecosystem.

Importing the package registers the config, model and tokenizer with transformers' Auto
classes, and marks them for ``save_pretrained`` to write ``auto_map`` and copy their code
into checkpoints (so that ``trust_remote_code=True`` loads them without hf_music).
"""

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .generation import PerformanceGrammarLogitsProcessor, generate_ids, generate_midi
from .music_transformer.configuration_music_transformer import PRESETS, MusicTransformerConfig
from .music_transformer.modeling_music_transformer import MusicTransformerForCausalLM
from .music_transformer.tokenization_miditok import MiditokTokenizer
from .music_transformer.tokenization_music_transformer import MidiReadError, MidiTokenizer, PerformanceNotes
from .resources import bundled_prompts, load_default_model, load_model, load_tokenizer

__version__ = "0.1.0"

AutoConfig.register(MusicTransformerConfig.model_type, MusicTransformerConfig, exist_ok=True)
AutoModelForCausalLM.register(MusicTransformerConfig, MusicTransformerForCausalLM, exist_ok=True)
# Both tokenizer classes become known to AutoTokenizer by name (a folder's tokenizer_config.json says
# which); a music_transformer config without one defaults to MidiTokenizer, so that is registered last.
AutoTokenizer.register(MusicTransformerConfig, slow_tokenizer_class=MiditokTokenizer, exist_ok=True)
AutoTokenizer.register(MusicTransformerConfig, slow_tokenizer_class=MidiTokenizer, exist_ok=True)
MusicTransformerConfig.register_for_auto_class()
MusicTransformerForCausalLM.register_for_auto_class("AutoModelForCausalLM")
MidiTokenizer.register_for_auto_class("AutoTokenizer")
MiditokTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "PRESETS",
    "MidiReadError",
    "MidiTokenizer",
    "MiditokTokenizer",
    "MusicTransformerConfig",
    "MusicTransformerForCausalLM",
    "PerformanceGrammarLogitsProcessor",
    "PerformanceNotes",
    "bundled_prompts",
    "generate_ids",
    "generate_midi",
    "load_default_model",
    "load_model",
    "load_tokenizer",
]
