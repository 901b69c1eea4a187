"""The Music Transformer causal LM: GPT-2 blocks over performance events.

Copied into checkpoints by ``save_pretrained`` for ``trust_remote_code``: relative imports only.
Attention goes through transformers' attention interface: SDPA by default,
``attn_implementation="flash_attention_2"`` when flash-attn is installed. ``save_pretrained`` also
writes ``custom_generate/generate.py``, a verbatim copy of the package's grammar module, which
transformers runs as the model's ``generate`` for Hub users without hf_music.
"""

from __future__ import annotations

import os
import shutil

from transformers import GenerationConfig, GPT2LMHeadModel

from .configuration_music_transformer import MusicTransformerConfig

# The package's self-contained grammar module, next to this file in hf_music (a copy of this file
# inside a checkpoint has none beside it: re-saving from there writes no custom_generate folder).
GRAMMAR_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grammar.py")
CUSTOM_GENERATE_DIR = "custom_generate"
# What custom_generate/generate.py imports, checked by transformers before it runs the file.
CUSTOM_GENERATE_REQUIREMENTS = "numpy\ntorch\ntransformers>=5.0\n"


def write_custom_generate(save_directory) -> str | None:
    """Copy the grammar module to SAVE_DIRECTORY/custom_generate/generate.py; None without one."""
    if not os.path.isfile(GRAMMAR_MODULE):
        return None
    folder = os.path.join(save_directory, CUSTOM_GENERATE_DIR)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "generate.py")
    shutil.copyfile(GRAMMAR_MODULE, target)
    with open(os.path.join(folder, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write(CUSTOM_GENERATE_REQUIREMENTS)
    return target


class MusicTransformerForCausalLM(GPT2LMHeadModel):
    config_class = MusicTransformerConfig

    def __init__(self, config: MusicTransformerConfig):
        super().__init__(config)
        # Sampling defaults written to generation_config.json: ancestral sampling without truncation
        # (truncation made samples repeat themselves), and hf_music's grammar settings, the same as
        # grammar.GRAMMAR_DEFAULTS beside this file in hf_music (read by hf_music.generate_ids and custom_generate;
        # transformers' own generate keeps them as unused attributes).
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_polyphony=16,
            max_silence_seconds=2.0,
            max_note_seconds=8.0,
            soft_note_seconds=2.0,
            pitch_temperature=0.8,
            repeat_penalty=1.0,
            max_new_tokens=1024,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained, plus custom_generate/ (the grammar for Hub users)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        write_custom_generate(save_directory)


__all__ = ["MusicTransformerForCausalLM", "write_custom_generate"]
