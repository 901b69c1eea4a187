"""The Music Transformer causal LM: GPT-2 blocks over performance events.

Copied into checkpoints by ``save_pretrained`` for ``trust_remote_code``: relative imports only.
Attention goes through transformers' attention interface: SDPA by default,
``attn_implementation="flash_attention_2"`` when flash-attn is installed.
"""

from __future__ import annotations

from transformers import GenerationConfig, GPT2LMHeadModel

from .configuration_music_transformer import MusicTransformerConfig


class MusicTransformerForCausalLM(GPT2LMHeadModel):
    config_class = MusicTransformerConfig

    def __init__(self, config: MusicTransformerConfig):
        super().__init__(config)
        # Sampling defaults written to generation_config.json: plain ancestral sampling (truncation
        # made samples repeat themselves), and hf_music's limits (read by hf_music.generate_ids;
        # transformers' generate keeps them as unused attributes).
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_polyphony=16,
            max_silence_seconds=2.0,
            max_note_seconds=8.0,
            max_new_tokens=1024,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        )


__all__ = ["MusicTransformerForCausalLM"]
