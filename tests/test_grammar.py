"""hf_music.music_transformer.grammar: the vocabulary layout, and the grammar shipped as custom_generate/generate.py.

The checkpoint's custom_generate is tested where Hub users run it: in a process that cannot
import hf_music, through ``pipeline("text-generation")`` and ``generate(custom_generate=...)``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import symusic
import torch
from transformers import AutoTokenizer

import hf_music
from hf_music import MidiTokenizer, MusicTransformerConfig, MusicTransformerForCausalLM
from hf_music.music_transformer.grammar import (
    EventLayout,
    PerformanceGrammarLogitsProcessor,
    grammar_violations,
)
from hf_music.resources import DEFAULT_MODEL_DIR

GRAMMAR_SOURCE = os.path.join(os.path.dirname(hf_music.__file__), "music_transformer", "grammar.py")


def test_layout_is_read_from_the_token_names_of_slow_and_fast_tokenizers(tmp_path):
    slow = MidiTokenizer(time_resolution_ms=8, max_time_shift=125, num_velocity_bins=16)
    slow.save_pretrained(tmp_path)
    fast = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=False)
    for tok in (slow, fast):
        layout = EventLayout.of(tok)
        assert (layout.note_on_offset, layout.note_off_offset) == (slow.note_on_offset, slow.note_off_offset)
        assert (layout.time_shift_offset, layout.velocity_offset) == (
            slow.time_shift_offset,
            slow.velocity_offset,
        )
        assert (layout.max_time_shift, layout.time_step, layout.size) == (125, 0.008, len(slow))
    with pytest.raises(ValueError, match="not a performance-event vocabulary"):
        EventLayout.from_vocab({"<pad>": 0, "a": 1}, 0.01)


def test_saved_checkpoints_carry_the_grammar_module_verbatim(tmp_path):
    MusicTransformerForCausalLM(MusicTransformerConfig.from_preset("tiny", n_positions=64)).save_pretrained(
        tmp_path
    )
    with open(GRAMMAR_SOURCE, "rb") as fh:
        assert (tmp_path / "custom_generate" / "generate.py").read_bytes() == fh.read()
    assert "torch" in (tmp_path / "custom_generate" / "requirements.txt").read_text().split()


HUB_USER = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockHfMusic(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "hf_music" or name.startswith("hf_music."):
                raise ImportError("hf_music is blocked in this process")

    sys.meta_path.insert(0, BlockHfMusic())
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationMixin, pipeline

    torch.set_num_threads(1)  # batch-1 decoding gains nothing from threads; a busy CPU makes them spin
    folder, prompts_file, out_dir = sys.argv[1:4]
    prompts = json.load(open(prompts_file))
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # tokenizer.json
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, use_safetensors=True)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    torch.manual_seed(0)
    texts = [row[0]["generated_text"] for row in generator(prompts, max_new_tokens=160, batch_size=2)]
    # The other way: a model's plain generate asked for the checkpoint's custom_generate by name.
    bos = torch.tensor([[tokenizer.bos_token_id]] * 2)
    custom = GenerationMixin.generate(
        model, bos, custom_generate=folder, trust_remote_code=True, max_new_tokens=160
    )
    installed = model.generate(bos, max_new_tokens=160)  # the model's generate: the checkpoint's grammar
    free = GenerationMixin.generate(model, bos, do_sample=True, max_new_tokens=160)  # no grammar
    midi = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # MIDI out: the checkpoint's code
    for i, text in enumerate(texts):
        midi.write_midi(midi(text)["input_ids"], f"{out_dir}/pipeline_{i}.mid")
    rows = {"custom": custom.tolist(), "installed": installed.tolist(), "free": free.tolist()}
    print(json.dumps({"pipeline": texts, **rows}))
    """
)


def run_hub_user(folder, prompts: list[str], tmp_path) -> subprocess.CompletedProcess:
    """HUB_USER on a checkpoint folder and prompts, in a process that cannot import hf_music."""
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    result = subprocess.run(
        [sys.executable, "-c", HUB_USER, str(folder), str(tmp_path / "prompts.json"), str(tmp_path)],
        capture_output=True, text=True, cwd=folder, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_hub_users_without_hf_music_sample_without_grammar_violations(tmp_path, maestro_files):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "checkpoint")
    tok = MidiTokenizer()
    piece = tok.convert_ids_to_tokens(tok.encode_midi(maestro_files[0])[1:-1])
    # An empty prompt, a short one, and one longer than the context leaves room for (it is cut).
    prompts = ["", "VELOCITY_20 NOTE_ON_60 TIME_SHIFT_50", " ".join(piece[:2000])]
    result = run_hub_user(folder, prompts, tmp_path)
    assert "the prompt is cut to its last 1888 tokens" in result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    for i, (prompt, text) in enumerate(zip(prompts, out["pipeline"], strict=True)):
        assert text.startswith(prompt) and len(text.split()) == len(prompt.split()) + 160  # well-formed text
        ids = tok(text)["input_ids"]
        assert grammar_violations(ids, tok) == grammar_violations(tok(prompt)["input_ids"], tok) == 0
        notes = symusic.Score(str(tmp_path / f"pipeline_{i}.mid")).tracks[0].notes
        assert len(notes) == len(tok.ids_to_notes(ids)) > 0
    for row in out["custom"] + out["installed"]:
        assert grammar_violations(row, tok) == 0 and len(row) == 161
    assert sum(grammar_violations(row, tok) for row in out["free"]) > 0  # what the grammar prevents


# ---------------------------------------------------------------- merged (BPE) tokens
@pytest.fixture(scope="module")
def bpe_tokenizer(maestro_files):
    base = MidiTokenizer()
    return base.train_bpe([base.encode_midi(path) for path in maestro_files[:10]], 1000)


def allowed_by_the_base_grammar(tok, prefix: list[int], events: list[int], **limits) -> bool:
    """Whether each event, played in turn after the prefix (base ids), is allowed by the base grammar."""
    grammar = PerformanceGrammarLogitsProcessor(MidiTokenizer(), history=[prefix], **limits)
    row = list(prefix)
    for event in events:
        scores = grammar(torch.tensor([row]), torch.zeros(1, tok.base_vocab_size))
        if not torch.isfinite(scores[0, event]):
            return False
        row.append(event)
    return True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_merged_token_is_allowed_exactly_when_its_events_are(bpe_tokenizer, seed):
    tok = bpe_tokenizer
    limits = {
        "max_polyphony": 4,
        "max_silence_seconds": 0.3,
        "max_note_seconds": 0.6,
    }  # tight: every rule acts
    torch.manual_seed(seed)
    grammar = PerformanceGrammarLogitsProcessor(tok, **limits)
    row = torch.tensor([[tok.bos_token_id]])
    checked = {"periodic": 0, "overlong": 0}
    for step in range(300):
        scores = grammar(row, torch.randn(1, len(tok)) * 2)
        held = np.where(grammar.sounding, grammar.now[:, None] - grammar.struck, 0)  # the host state
        # Every 100 steps, and in the first two states with a note held too long (only releases go).
        kind = (
            "overlong" if bool((held >= grammar.max_note).any()) and checked["overlong"] < 2 else "periodic"
        )
        if kind == "overlong" or step % 100 == 99:  # every merged token against its events, one by one
            prefix = tok.base_ids(row[0]).tolist()
            for merged in range(tok.base_vocab_size, len(tok), 3):
                expected = allowed_by_the_base_grammar(tok, prefix, tok.base_ids([merged]).tolist(), **limits)
                assert bool(torch.isfinite(scores[0, merged])) == expected, (
                    step,
                    tok.convert_ids_to_tokens(merged),
                )
            checked[kind] += 1
        row = torch.cat((row, torch.multinomial(torch.softmax(scores, -1), 1)), dim=1)
    assert checked["periodic"] >= 3 and checked["overlong"] == 2, checked
    ids = row[0].numpy()
    assert grammar_violations(ids, tok) == 0 and (ids >= tok.base_vocab_size).mean() > 0.3


@pytest.mark.slow
def test_hub_users_without_hf_music_sample_merged_tokens_without_grammar_violations(tmp_path, bpe_tokenizer):
    folder = tmp_path / "checkpoint"
    torch.manual_seed(0)
    config = MusicTransformerConfig.from_preset("tiny", n_positions=256, vocab_size=len(bpe_tokenizer))
    MusicTransformerForCausalLM(config).save_pretrained(folder)  # random weights: every id gets tried
    bpe_tokenizer.save_pretrained(folder)
    prompts = ["", "VELOCITY_20 NOTE_ON_60+TIME_SHIFT_1 NOTE_OFF_60"]
    result = run_hub_user(folder, prompts, tmp_path)
    out = json.loads(result.stdout.splitlines()[-1])
    tok = bpe_tokenizer
    rows = [tok(text)["input_ids"] for text in out["pipeline"]] + out["custom"] + out["installed"]
    for row in rows:
        assert grammar_violations(row, tok) == 0
        assert sum(i >= tok.base_vocab_size for i in row) > 20  # merged tokens are sampled
    assert sum(grammar_violations(row, tok) for row in out["free"]) > 0
    for i in range(len(prompts)):  # the checkpoint's own code writes MIDI from merged tokens
        assert symusic.Score(str(tmp_path / f"pipeline_{i}.mid")).note_num() > 0


def test_the_grammar_gives_the_same_scores_for_any_layout_and_dtype_of_the_logits():
    """The processor reads scores as model.generate hands them (a row-strided slice of the logits) and in
    any float dtype: the same masks and, up to the dtype's rounding, the same odds; a float32 slice bit for bit."""
    tok = MidiTokenizer()
    torch.manual_seed(0)
    settings = {
        "max_polyphony": 3,
        "max_note_seconds": 0.5,
        "soft_note_seconds": 0.2,
        "max_silence_seconds": 0.3,
    }
    contiguous, strided, wide = (PerformanceGrammarLogitsProcessor(tok, **settings) for _ in range(3))
    row = torch.tensor([[tok.bos_token_id]] * 2)
    for _ in range(200):
        logits = torch.randn(2, 3, len(tok)) * 3  # [batch, positions, vocab]: the last position's scores
        expected = contiguous(row, logits[:, -1].contiguous())
        assert torch.equal(strided(row, logits[:, -1]), expected)
        in_float64 = wide(row, logits[:, -1].double())
        assert in_float64.dtype == torch.float64
        assert torch.equal(torch.isinf(in_float64), torch.isinf(expected))
        torch.testing.assert_close(in_float64.float(), expected, atol=1e-4, rtol=1e-5)
        row = torch.cat((row, torch.multinomial(torch.softmax(expected, -1), 1)), dim=1)
    assert grammar_violations(row[0].numpy(), tok) == grammar_violations(row[1].numpy(), tok) == 0
