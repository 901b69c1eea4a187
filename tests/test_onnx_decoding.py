"""hf_music.onnx_decoding: the decoding step on onnxruntime (in-place cache), float32 and int8."""

from __future__ import annotations

import copy
import logging
import sys

import numpy as np
import pytest
import torch

from hf_music import MusicTransformerForCausalLM, generate_ids
from hf_music.decoding import DecoderStep
from hf_music.generation import grammar_violations
from hf_music.onnx_decoding import OnnxDecoderStep, onnx_step, supports_onnx_decoding

pytest.importorskip("onnxruntime", reason="the onnx extra is part of the dev install")


def stepped_logits(step, ids: torch.Tensor, spans) -> torch.Tensor:
    """The last token's logits of each (first, last) span, run in order on one cache."""
    cache = step.new_cache(ids.shape[0])
    with torch.inference_mode():
        return torch.cat(
            [step(ids[:, first:last], first, cache, last_only=True)[0] for first, last in spans], 1
        )


SPANS = [(0, 30), (30, 35)] + [(i, i + 1) for i in range(35, 64)]  # a prefill, a chunk, then steps


@pytest.mark.parametrize("activation", ["gelu_pytorch_tanh", "gelu"])
def test_float32_step_equals_the_lean_step_to_rounding(short_model, excerpts, activation):
    ids = excerpts[:, :64]
    config = copy.deepcopy(short_model.config)
    config.activation_function = activation  # GPT-2's tanh GELU (the default), or the exact one
    model = MusicTransformerForCausalLM(config).eval()
    model.load_state_dict(short_model.state_dict())
    want = stepped_logits(DecoderStep(model), ids, SPANS)
    got = stepped_logits(OnnxDecoderStep(model), ids, SPANS)
    assert got.shape == want.shape == (2, len(SPANS), model.config.vocab_size)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_prefill_from_position_0_overwrites_the_cache_as_a_reprime_does(short_model, excerpts):
    """After a full window, the sampler prefills the most recent tokens at 0 into the same cache."""
    step, lean = OnnxDecoderStep(short_model), DecoderStep(short_model)
    cache, lean_cache = step.new_cache(2), lean.new_cache(2)
    with torch.inference_mode():
        for position in range(64):
            step(excerpts[:, position : position + 1], position, cache)
        got = step(excerpts[:, 100:132], 0, cache)[0]
        want = lean(excerpts[:, 100:132], 0, lean_cache, last_only=True)[0]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match="do not fit the context of 64"):
            step(excerpts[:, :2], 63, cache)


def test_int8_step_keeps_the_default_models_predictions_on_real_music(default_model, excerpts):
    """Quantized matrix products: next-event distributions within 0.02 nats (KL) on average of
    float32's, the same most likely event at most positions, and NLL within 1%."""
    ids = excerpts
    spans = [(0, 1)] + [(i, i + 1) for i in range(1, ids.shape[1] - 1)]
    exact = stepped_logits(OnnxDecoderStep(default_model), ids, spans).log_softmax(-1)
    fast = stepped_logits(OnnxDecoderStep(default_model, weights="int8"), ids, spans).log_softmax(-1)
    kl = (exact.exp() * (exact - fast)).sum(-1)
    assert 0 < kl.mean() < 0.02
    assert (exact.argmax(-1) == fast.argmax(-1)).float().mean() > 0.9
    targets = ids[:, 1:, None]
    nll_exact, nll_fast = -exact.gather(-1, targets).mean(), -fast.gather(-1, targets).mean()
    assert abs(nll_fast - nll_exact) < 0.01 * nll_exact


def test_building_int8_leaves_the_callers_logging_as_it_was(short_model):
    """onnxruntime's quantizer calls logging.basicConfig(INFO) when imported."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    OnnxDecoderStep(short_model, weights="int8")
    assert root.handlers == handlers and root.level == level


def test_one_step_per_model_until_its_parameters_change(short_model):
    model = MusicTransformerForCausalLM(short_model.config).eval()
    model.load_state_dict(short_model.state_dict())
    first = onnx_step(model)
    int8 = onnx_step(model, weights="int8")
    assert onnx_step(model) is first and int8 is not first and onnx_step(model, weights="int8") is int8
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # as an optimizer writes: in place
    assert onnx_step(model) is not first


def test_a_model_made_in_inference_mode_gets_its_step_too(short_model):
    with torch.inference_mode():  # its parameters keep no version counter
        model = MusicTransformerForCausalLM(short_model.config).eval()
    assert onnx_step(model) is onnx_step(model)


def test_onnx_backends_keep_the_grammar_length_and_seed(short_model, tokenizer):
    """Past the 64-position context (several re-primes), batched, seeded."""
    for backend in ("onnx", "onnx-int8"):
        rows = generate_ids(short_model, tokenizer, max_new_tokens=300, seed=3, num_return_sequences=2,
                            backend=backend)  # fmt: skip
        assert [len(row) for row in rows] == [301, 301] and rows[0] != rows[1]
        assert all(grammar_violations(row, tokenizer) == 0 for row in rows)
        assert generate_ids(short_model, tokenizer, max_new_tokens=300, seed=3, num_return_sequences=2,
                            backend=backend) == rows  # fmt: skip
        (row,) = generate_ids(
            short_model, tokenizer, max_seconds=3.0, max_new_tokens=2000, seed=0, backend=backend
        )
        seconds = float(np.sum(tokenizer.steps_of_id[np.array(row)])) * tokenizer.time_step
        assert 3.0 <= seconds < 4.1


def test_models_the_graph_does_not_compute_are_refused(short_model, tokenizer):
    half = MusicTransformerForCausalLM(short_model.config).to(torch.bfloat16).eval()
    assert supports_onnx_decoding(short_model) and not supports_onnx_decoding(half)
    with pytest.raises(ValueError, match="backend='onnx' needs a GPT-2 model in float32 on the CPU"):
        generate_ids(half, tokenizer, max_new_tokens=4, backend="onnx")
    with pytest.raises(ValueError, match="weights must be one of float32, int8"):
        OnnxDecoderStep(short_model, weights="int4")


def test_cli_writes_pieces_with_the_onnx_int8_backend(tmp_path, tokenizer):
    from hf_music.commands.generate import main

    written = main(["--no_wav", "--seconds", "2", "--samples", "2", "--seed", "4", "--backend", "onnx-int8",
                    "--out", str(tmp_path / "piece.mid")])  # fmt: skip
    notes = [tokenizer.midi_to_notes(str(path)) for path in written]
    assert [path.name for path in written] == ["piece_1.mid", "piece_2.mid"]
    assert all(len(n.onset) > 0 and 1.5 < float(n.offset.max()) <= 3.1 for n in notes)


def test_without_the_onnx_extra_the_backend_names_it(short_model, tokenizer, monkeypatch):
    model = MusicTransformerForCausalLM(short_model.config).eval()  # no session built for it yet
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"need the onnx extra .*pip install 'hf_music\[onnx\]'"):
        generate_ids(model, tokenizer, max_new_tokens=4, backend="onnx-int8")
