"""hf_music.decoding: the lean decoder's logits, its ONNX export, and generate_ids' two backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_music import (
    MusicTransformerConfig,
    MusicTransformerForCausalLM,
    generate_ids,
)
from hf_music.decoding import ONNX_INPUTS, ONNX_OUTPUTS, DecoderStep, export_onnx, reprime_length
from hf_music.generation import grammar_violations


def reference_logits(model, ids: torch.Tensor, prefill: int) -> torch.Tensor:
    """transformers' own incremental decoding: a prefill, then one token at a time with its cache."""
    with torch.inference_mode():
        out = model(ids[:, :prefill], use_cache=True)
        logits, cache = [out.logits], out.cache
        for i in range(prefill, ids.shape[1]):
            out = model(ids[:, i : i + 1], cache=cache, use_cache=True)
            logits.append(out.logits)
            cache = out.cache
    return torch.cat(logits, dim=1)


def lean_logits(model, ids: torch.Tensor, prefill: int) -> torch.Tensor:
    step = DecoderStep(model)
    past = step.new_cache(ids.shape[0])
    with torch.inference_mode():
        logits = [step(ids[:, :prefill], 0, past)[0]]
        logits += [step(ids[:, i : i + 1], i, past)[0] for i in range(prefill, ids.shape[1])]
    return torch.cat(logits, dim=1)


def test_step_logits_equal_the_models_on_real_music(default_model, excerpts):
    got = lean_logits(default_model, excerpts, prefill=100)
    assert got.shape == (2, 160, default_model.config.vocab_size)
    torch.testing.assert_close(got, reference_logits(default_model, excerpts, 100), atol=1e-5, rtol=0)
    with torch.inference_mode():  # and one full forward pass, up to the order of the sums (|logits| < 30)
        whole = default_model(excerpts).logits
    torch.testing.assert_close(got, whole, atol=5e-4, rtol=0)


def test_a_prefill_in_chunks_and_last_only_logits_equal_the_models(default_model, excerpts):
    # Chunks after the first start past position 0 (the masked attention path), equal to the
    # model's forward pass up to the order of the sums (as above); the sampler's last-token-only
    # logits are the full call's last row (a 1-row product: rounding apart); a second cache is
    # looked up afresh.
    step = DecoderStep(default_model)
    with torch.inference_mode():
        whole = default_model(excerpts).logits
        for _ in range(2):
            past = step.new_cache(2)
            chunks = [step(excerpts[:, start : start + 40], start, past)[0] for start in range(0, 160, 40)]
            torch.testing.assert_close(torch.cat(chunks, dim=1), whole, atol=5e-4, rtol=0)
            last = step(excerpts[:, 120:160], 120, past, last_only=True)[0]  # the same keys written again
            assert last.shape == (2, 1, default_model.config.vocab_size)
            torch.testing.assert_close(last, chunks[-1][:, -1:], atol=1e-5, rtol=0)


def test_cache_is_written_in_place_at_the_tokens_positions(short_model, excerpts):
    step = DecoderStep(short_model)
    past = step.new_cache(2)
    with torch.inference_mode():
        _, present = step(excerpts[:, :10], 0, past)
        assert present is past and past[:, :, :, :, :10].abs().sum() > 0
        assert not past[:, :, :, :, 10:].any()
        step(excerpts[:, 10:11], 10, past)
        assert past[:, :, :, :, 10].abs().sum() > 0 and not past[:, :, :, :, 11:].any()


def test_models_the_step_cannot_compute_exactly_are_refused():
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=32, scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match="not a GPT-2 model the lean decoder computes exactly"):
        DecoderStep(GPT2LMHeadModel(config))


def test_both_backends_give_the_same_ids_for_a_seed(short_model, tokenizer):
    # 300 tokens of a 64-position model: five re-primed windows, the grammar carried across them.
    for sampling in (
        dict(num_return_sequences=3),
        dict(num_return_sequences=2, max_seconds=3.0, temperature=0.9, top_k=40),
        dict(constrained=False, top_p=0.9, min_p=0.02),
        dict(stop_at_eos=True, num_return_sequences=4),
    ):
        lean = generate_ids(short_model, tokenizer, max_new_tokens=300, seed=3, backend="lean", **sampling)
        plain = generate_ids(
            short_model, tokenizer, max_new_tokens=300, seed=3, backend="transformers", **sampling
        )
        assert lean == plain, sampling
        assert lean == generate_ids(short_model, tokenizer, max_new_tokens=300, seed=3, **sampling)  # auto


def test_both_backends_continue_a_prompt_longer_than_the_context_alike(short_model, tokenizer, excerpts):
    prompt = excerpts[0, :100].tolist()  # 100 real events for a 64-event context: re-primed at once
    for max_new_tokens in (1, 31, 90):
        lean = generate_ids(short_model, tokenizer, prompt, max_new_tokens=max_new_tokens, seed=5,
                            num_return_sequences=2, backend="lean")  # fmt: skip
        plain = generate_ids(short_model, tokenizer, prompt, max_new_tokens=max_new_tokens, seed=5,
                             num_return_sequences=2, backend="transformers")  # fmt: skip
        assert lean == plain and all(row[:100] == prompt and len(row) == 100 + max_new_tokens for row in lean)


def test_a_bfloat16_model_decodes_in_its_own_dtype(tokenizer):
    torch.manual_seed(0)
    config = MusicTransformerConfig.from_preset("tiny", n_positions=64, initializer_range=0.2)
    model = MusicTransformerForCausalLM(config).eval().to(torch.bfloat16)
    assert DecoderStep(model).new_cache(1).dtype == torch.bfloat16
    lean = generate_ids(model, tokenizer, max_new_tokens=100, seed=2, backend="lean")
    assert lean == generate_ids(model, tokenizer, max_new_tokens=100, seed=2, backend="transformers")


def test_lean_samples_of_the_default_model_keep_the_grammar_and_the_length(default_model, tokenizer):
    rows = generate_ids(default_model, tokenizer, max_seconds=4.0, max_new_tokens=2000, seed=0,
                        num_return_sequences=2)  # fmt: skip
    for row in rows:
        assert grammar_violations(row, tokenizer) == 0
        seconds = float(np.sum(tokenizer.steps_of_id[np.array(row)])) * tokenizer.time_step
        assert 4.0 <= seconds < 5.1  # stops at the TIME_SHIFT that reaches 4 s (at most 1 s long)


def test_reprime_keeps_half_of_the_context():
    assert reprime_length(2048) == 1024 and reprime_length(64) == 32


def test_backend_choice_is_checked(tokenizer):
    odd = GPT2LMHeadModel(
        GPT2Config(
            n_layer=1, n_embd=32, n_head=2, n_positions=32, vocab_size=391, reorder_and_upcast_attn=True
        )
    ).eval()
    with pytest.raises(ValueError, match="backend='lean' needs a GPT-2 model"):
        generate_ids(odd, tokenizer, max_new_tokens=4, backend="lean")
    with pytest.raises(ValueError, match="backend must be one of"):
        generate_ids(odd, tokenizer, max_new_tokens=4, backend="fastest")
    (row,) = generate_ids(odd, tokenizer, max_new_tokens=4, seed=0)  # auto: model.generate
    assert len(row) == 5


@pytest.mark.slow
def test_onnx_export_computes_the_same_step_on_a_growing_cache(short_model, excerpts, tmp_path):
    import onnx
    import onnxruntime

    path = export_onnx(short_model, tmp_path / "step.onnx")
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == list(ONNX_INPUTS)
    assert [o.name for o in graph.output] == list(ONNX_OUTPUTS)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    config = short_model.config  # 64 positions: the steps below fill the whole context
    head_dim = config.n_embd // config.n_head
    past = np.zeros((config.n_layer, 2, 2, config.n_head, 0, head_dim), np.float32)  # nothing yet
    ids = excerpts[:, :64].numpy()
    # A 30-token prefill on the empty cache, a 5-token chunk after it (each sees its own past), then
    # one token at a time up to the context's last position, the returned cache fed back.
    spans = [(0, 30), (30, 35)] + [(i, i + 1) for i in range(35, 64)]
    got = []
    for first, last in spans:
        logits, present = session.run(None, {"input_ids": ids[:, first:last], "past": past})
        assert present.shape == (config.n_layer, 2, 2, config.n_head, last, head_dim)
        got.append(logits)
        past = present
    got = np.concatenate(got, axis=1)
    np.testing.assert_allclose(got, lean_logits(short_model, excerpts[:, :64], 30).numpy(), atol=1e-4)
    step = DecoderStep(short_model)
    cache = step.new_cache(2)
    with torch.inference_mode():
        step(excerpts[:, :64], 0, cache)
    np.testing.assert_allclose(present, cache.numpy(), atol=1e-4)


def test_cli_samples_are_one_batched_run_and_the_same_from_either_backend(tmp_path):
    from hf_music.commands.generate import main

    pieces = {}
    for backend in ("lean", "transformers"):
        out = tmp_path / backend / "piece.mid"
        written = main(["--no_wav", "--seconds", "2", "--samples", "2", "--seed", "4", "--backend", backend,
                        "--out", str(out)])  # fmt: skip
        assert [path.name for path in written] == ["piece_1.mid", "piece_2.mid"]
        pieces[backend] = [path.read_bytes() for path in written]
    assert pieces["lean"] == pieces["transformers"] and pieces["lean"][0] != pieces["lean"][1]
