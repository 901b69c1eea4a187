"""Config, model, Auto registration, safetensors-only checkpoints, loading without hf_music."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_without_hf_music
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hf_music import MidiTokenizer, MusicTransformerConfig, MusicTransformerForCausalLM


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random model saved with save_pretrained, tokenizer included."""
    folder = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=256))
    model.save_pretrained(folder)
    MidiTokenizer().save_pretrained(folder)
    return folder


def test_config_defaults_match_tokenizer(tokenizer):
    config = MusicTransformerConfig()
    assert isinstance(config, GPT2Config)
    assert config.model_type == "music_transformer"
    assert config.vocab_size == tokenizer.vocab_size == 391
    assert config.n_positions == 2048
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("tiny", 0.8e6, 1.5e6), ("small", 15e6, 25e6), ("base", 70e6, 90e6)]
)
def test_presets_have_their_sizes(preset, low, high):
    with torch.device("meta"):  # sizes without allocating the weights
        model = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset(preset))
    assert low <= count_parameters(model) <= high


def test_an_unknown_preset_is_named_and_preset_fields_can_be_overridden():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        MusicTransformerConfig.from_preset("huge")
    config = MusicTransformerConfig.from_preset("tiny", n_positions=512)
    assert (config.n_embd, config.n_positions) == (128, 512)


def test_model_is_gpt2_with_sdpa_and_forward_loss(checkpoint):
    model = MusicTransformerForCausalLM.from_pretrained(checkpoint)
    assert isinstance(model, GPT2LMHeadModel)
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(3, 391, (2, 32))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 32, 391)
    assert 5.0 < out.loss.item() < 7.0  # about ln(391) = 5.97 for random weights


def test_auto_classes_after_import(checkpoint):
    assert isinstance(AutoConfig.from_pretrained(checkpoint), MusicTransformerConfig)
    assert isinstance(AutoModelForCausalLM.from_pretrained(checkpoint), MusicTransformerForCausalLM)
    # AutoTokenizer gives the fast tokenizer of tokenizer.json (hf_music or not); MidiTokenizer its class.
    fast, slow = AutoTokenizer.from_pretrained(checkpoint), MidiTokenizer.from_pretrained(checkpoint)
    assert type(fast).__name__ == "TokenizersBackend" and isinstance(slow, MidiTokenizer)
    assert fast("NOTE_ON_60 TIME_SHIFT_7").input_ids == slow("NOTE_ON_60 TIME_SHIFT_7").input_ids
    assert isinstance(AutoConfig.for_model("music_transformer"), MusicTransformerConfig)


def test_checkpoint_is_safetensors_with_code_and_auto_map(checkpoint):
    files = set(os.listdir(checkpoint))
    assert "model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    assert {
        "configuration_music_transformer.py",
        "modeling_music_transformer.py",
        "tokenization_music_transformer.py",
    } <= files
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_music_transformer.MusicTransformerConfig",
        "AutoModelForCausalLM": "modeling_music_transformer.MusicTransformerForCausalLM",
    }
    tok_config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    assert tok_config["auto_map"]["AutoTokenizer"][0] == "tokenization_music_transformer.MidiTokenizer"


def test_saved_generation_config_samples_untruncated_1024_new_tokens(checkpoint):
    gen = json.loads((checkpoint / "generation_config.json").read_text())
    assert gen["do_sample"] is True
    assert gen["temperature"] == 1.0 and gen["top_k"] == 0 and gen["top_p"] == 1.0
    assert gen["max_new_tokens"] == 1024
    assert (gen["pad_token_id"], gen["bos_token_id"], gen["eos_token_id"]) == (0, 1, 2)


@pytest.mark.slow
def test_fresh_process_without_hf_music_loads_and_generates(checkpoint, tmp_path, tokenizer):
    out_file = tmp_path / "generated.mid"
    stdout = run_without_hf_music(checkpoint, out_file)
    module, model_name, tokenizer_name, length = stdout.split()
    assert module.startswith("transformers_modules.")
    assert (model_name, tokenizer_name, int(length)) == ("MusicTransformerForCausalLM", "MidiTokenizer", 65)
    assert out_file.stat().st_size > 0
    tokenizer.encode_midi(out_file)  # a valid MIDI file


def test_generation_config_carries_the_grammar_defaults():
    # modeling_music_transformer.py is copied into checkpoints and cannot import the grammar module:
    # its generation_config and the embedded model's must name the same sampling defaults.
    from hf_music.music_transformer.grammar import GRAMMAR_DEFAULTS
    from hf_music.resources import DEFAULT_MODEL_DIR

    config = MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny")).generation_config
    embedded = json.loads((DEFAULT_MODEL_DIR / "generation_config.json").read_text())
    for name, value in GRAMMAR_DEFAULTS.items():
        assert getattr(config, name) == value and embedded[name] == value, name
