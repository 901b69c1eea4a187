"""A lean incremental decoder for hf_music's own (GPT-2) model: one step per token against a
preallocated KV cache, and its ONNX export.

`DecoderStep` runs the model's own modules and parameters (nothing is copied, so it cannot drift
from the model) on ``input_ids`` [batch, tokens] at ``position`` (the index of the first token),
writing the tokens' keys and values into ``past`` [layers, 2, batch, heads, max_len, head_dim] at
position..position+tokens-1 and attending to the cache up to there. One call serves a prompt
(prefill, tokens > 1) or one decoding step (tokens = 1). In eager mode the cache is written in place
and only its filled part is read; `export_onnx` writes the same step as a graph whose growing cache
is an input (``past``, the positions so far) and an output (``present``, with the tokens' appended),
for onnxruntime (Python or web).

Why not ``model.generate``: at batch 1 a 3.8M-parameter model needs ~12 MFLOP per token, and
transformers' per-step machinery (cache objects, masks, processor lists, stopping checks) cost as
much as the model itself (the same ids came out at about twice the speed here).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ONNX_INPUTS = ("input_ids", "past")
ONNX_OUTPUTS = ("logits", "present")


def supports_lean_decoding(model) -> bool:
    """Whether `DecoderStep` computes this model exactly: a GPT-2 LM head model with plain attention."""
    config = getattr(model, "config", None)
    transformer = getattr(model, "transformer", None)
    return (
        getattr(config, "model_type", None) in ("music_transformer", "gpt2")
        and transformer is not None
        and hasattr(transformer, "wpe")
        and not getattr(config, "scale_attn_by_inverse_layer_idx", False)
        and not getattr(config, "reorder_and_upcast_attn", False)
        and not getattr(config, "add_cross_attention", False)
    )


class DecoderStep(nn.Module):
    """One decoding step (or a prefill) of a GPT-2 LM head model against a preallocated KV cache.

    ``forward(input_ids, position, past) -> (logits, present)``; in eager mode (``functional=False``)
    ``present`` is ``past`` itself, written in place. ``functional=True`` (the ONNX export) takes a
    growing cache instead: ``past`` [layers, 2, batch, heads, position, head_dim] holds exactly the
    positions before the tokens, and ``present`` is it with the tokens' keys and values appended.
    """

    def __init__(self, model, functional: bool = False):
        super().__init__()
        if not supports_lean_decoding(model):
            raise ValueError(f"{type(model).__name__} is not a GPT-2 model the lean decoder computes exactly")
        config = model.config
        self.transformer, self.lm_head = model.transformer, model.lm_head  # the model's own modules
        self.heads, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.layers, self.max_len = config.n_layer, config.n_positions
        self.scale = None if config.scale_attn_weights else 1.0  # None: SDPA's 1/sqrt(head_dim)
        self.functional = functional
        # Per block, its parameters (the model's own tensors, not copies), looked up once: a step
        # is a few dozen small ops, and nn.Module attribute lookups would cost as much as the math.
        self.blocks = [
            (
                (block.ln_1.weight, block.ln_1.bias, block.ln_1.eps),
                block.attn.c_attn.weight,
                block.attn.c_attn.bias,
                block.attn.c_proj.weight,
                block.attn.c_proj.bias,
                (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps),
                block.mlp.c_fc.weight,
                block.mlp.c_fc.bias,
                block.mlp.act,
                block.mlp.c_proj.weight,
                block.mlp.c_proj.bias,
            )
            for block in self.transformer.h
        ]
        self._layer_caches: tuple[torch.Tensor | None, list] = (None, [])

    def _layers_of(self, past: torch.Tensor) -> list[torch.Tensor]:
        """past[layer] per layer, looked up once per cache: indexing a tensor costs microseconds."""
        if self._layer_caches[0] is not past:
            self._layer_caches = (past, list(past.unbind(0)))
        return self._layer_caches[1]

    def _eager(self, input_ids: torch.Tensor, position: int, past: torch.Tensor, last_only: bool):
        """The in-place step with as few tensor ops as the math allows: at batch 1 each op's dispatch
        (a few microseconds) costs about as much as its arithmetic. Rows are [batch * tokens, width]."""
        batch, tokens = input_ids.shape
        end = position + tokens
        positions = torch.arange(position, end, device=input_ids.device)
        hidden = self.transformer.wte(input_ids) + self.transformer.wpe(positions)  # modules: hooks apply
        hidden = hidden.view(batch * tokens, -1)
        causal = tokens > 1 and position == 0  # a prefill from the start: SDPA's causal kernel
        mask = None
        if tokens > 1 and not causal:
            mask = torch.ones(tokens, end, dtype=torch.bool, device=input_ids.device).tril(position)
        for block, layer_cache in zip(self.blocks, self._layers_of(past), strict=True):
            hidden = self._block(
                block, hidden, batch, self._attend_in_place, layer_cache, position, end, mask, causal
            )
        if last_only:
            hidden = hidden.view(batch, tokens, -1)[:, -1]
            tokens = 1
        # The modules themselves, not their functions: hooks on the head (a bias on <eos>, say) apply.
        return self.lm_head(self.transformer.ln_f(hidden)).view(batch, tokens, -1)

    def _block(self, block, hidden, batch, attend, *cache_args):
        """One GPT-2 block, op for op as transformers computes it (Conv1D: x @ W + b), on [batch *
        tokens, width] rows. ``attend(qkv, *cache_args)`` stores the tokens' keys and values and
        returns the attention output: in place for decoding, appended for the exported graph."""
        width = hidden.shape[-1]
        ln_1, qkv_w, qkv_b, proj_w, proj_b, ln_2, fc_w, fc_b, act, out_w, out_b = block
        qkv = torch.addmm(qkv_b, F.layer_norm(hidden, (width,), *ln_1), qkv_w)
        qkv = qkv.view(batch, -1, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = attend(qkv, *cache_args)
        hidden = hidden + torch.addmm(proj_b, y.transpose(1, 2).reshape(-1, width), proj_w)
        x = act(torch.addmm(fc_b, F.layer_norm(hidden, (width,), *ln_2), fc_w))
        return hidden + torch.addmm(out_b, x, out_w)

    def _attend_in_place(self, qkv, layer_cache, position, end, mask, causal):
        """Keys and values written into the preallocated cache by one copy; attend to its filled part."""
        layer_cache[:, :, :, position:end].copy_(qkv[1:])
        return F.scaled_dot_product_attention(
            qkv[0], layer_cache[0, :, :, :end], layer_cache[1, :, :, :end],
            attn_mask=mask, is_causal=causal, scale=self.scale,
        )  # fmt: skip

    def _attend_growing(self, qkv, layer_past, mask, new):
        """Keys and values after the cache's (``new`` collects them for ``present``); attend to all."""
        new.append(qkv[1:])
        keys, values = torch.cat((layer_past[0], qkv[1]), dim=2), torch.cat((layer_past[1], qkv[2]), dim=2)
        return F.scaled_dot_product_attention(qkv[0], keys, values, attn_mask=mask, scale=self.scale)

    def new_cache(self, batch: int, max_len: int | None = None) -> torch.Tensor:
        """An empty cache [layers, 2, batch, heads, max_len, head_dim], the model's dtype and device."""
        shape = (self.layers, 2, batch, self.heads, max_len or self.max_len, self.head_dim)
        weight = self.lm_head.weight
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def forward(self, input_ids: torch.Tensor, position, past: torch.Tensor, last_only: bool = False):
        """``last_only``: logits of the last token only ([batch, 1, vocab]), as the sampler needs."""
        if not self.functional:
            return self._eager(input_ids, int(position), past, last_only), past
        batch, tokens = input_ids.shape
        positions = torch.arange(tokens, device=input_ids.device) + position
        hidden = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        hidden = hidden.view(batch * tokens, -1)
        # A growing cache: ``past`` holds positions 0..position-1 and each token sees the keys up
        # to its own position (a symbolic shape in the export, so no branch on it).
        end = position + tokens
        mask = torch.arange(end, device=input_ids.device)[None, :] <= positions[:, None]
        new = []
        for index, block in enumerate(self.blocks):
            hidden = self._block(block, hidden, batch, self._attend_growing, past[index], mask, new)
        logits = self.lm_head(self.transformer.ln_f(hidden)).view(batch, tokens, -1)
        return logits, torch.cat((past, torch.stack(new)), dim=4)  # the new keys and values after the old


class _GrowingCacheStep(nn.Module):
    """The exported graph's signature: ``(input_ids, past) -> (logits, present)``, the position
    being the cache's length, so a caller feeds ``present`` back and keeps no counter."""

    def __init__(self, model):
        super().__init__()
        self.step = DecoderStep(model, functional=True)

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor):
        return self.step(input_ids, past.shape[4], past)


def export_onnx(model, path, batch: int = 1, opset: int = 18) -> str:
    """Write the decoding step of `model` as an ONNX graph with a growing key/value cache.

    Inputs: ``input_ids`` int64 [batch, tokens] and ``past`` float32 [layers, 2, batch, heads,
    past_len, head_dim], the keys and values of the positions before the tokens (past_len may be
    0: a prefill). Outputs: ``logits`` float32 [batch, tokens, vocab] and ``present`` [layers, 2,
    batch, heads, past_len + tokens, head_dim], to feed back as the next ``past``. batch, tokens and
    past_len are dynamic; past_len + tokens must not pass the model's n_positions (the caller re-primes
    or stops there). A step moves only the filled cache, not the whole context's (the page in
    Chromium spent its time copying a fixed 2,048-position cache in and out of the wasm runtime).
    Needs the ``onnx`` extra (onnx, onnxscript). Returns the path.
    """
    wrapper = _GrowingCacheStep(model).eval()
    step = wrapper.step
    example = (torch.ones(batch, 2, dtype=torch.long), step.new_cache(batch, max_len=3))
    batch_dim = torch.export.Dim("batch")
    tokens_dim = torch.export.Dim("tokens", max=step.max_len)
    past_dim = torch.export.Dim("past_len", min=0, max=step.max_len - 1)
    shapes = {"input_ids": {0: batch_dim, 1: tokens_dim}, "past": {2: batch_dim, 4: past_dim}}
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper, example, input_names=list(ONNX_INPUTS), output_names=list(ONNX_OUTPUTS),
            dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False,
        )  # fmt: skip
    program.save(str(path))
    return str(path)


def reprime_length(context: int) -> int:
    """Tokens kept when a piece outgrows the context: the most recent half of it.

    GPT-2's positions are absolute, so a cache cannot roll: the kept tokens are prefilled again at
    positions 0.. (one batched forward pass) and each window then adds the other half. Keeping 3/4
    was measured and not kept: on 10 MAESTRO (maestro-mini) excerpts, the embedded model's NLL of
    the same 512 events after 1,024 and 1,536 events of context was 1.9356 and 1.9342 nats/event,
    while 5,000 events took 13.3 s of CPU against 10.6 s (a 1,536-event prefill every 512 events,
    and a fuller cache to attend to).
    """
    return context // 2


class LeanSampler:
    """Samples with `DecoderStep`: one prefill, then one step per token with the processors inside.

    ``processors`` are applied as ``model.generate`` applies them (the grammar, then the warpers);
    tokens are drawn with ``torch.multinomial`` on the softmax, as transformers does, so the same
    seed gives the same ids. A row ends at <eos> (or a sampled <pad>) or once its music lasts
    ``steps_needed`` TIME_SHIFT steps (``steps_of_id``); it is padded after that, as transformers pads it.
    """

    def __init__(self, model, processors, pad_token_id: int, eos_token_id: int, steps_of_id=None, step=None):
        """``step``: the model's step (`DecoderStep` by default; `hf_music.onnx_decoding.onnx_step`'s too)."""
        self.step = DecoderStep(model) if step is None else step
        self.device = next(model.parameters()).device
        self.context = model.config.n_positions
        self.processors, self.pad, self.eos = processors, pad_token_id, eos_token_id
        self.steps_of_id = None if steps_of_id is None else torch.as_tensor(steps_of_id, dtype=torch.long)

    @torch.inference_mode()
    def sample(
        self, prompt: torch.Tensor, max_new_tokens: int, steps_done=None, steps_needed=None, on_token=None
    ):
        """``prompt`` [batch, length] -> [batch, length + new] ids (new <= max_new_tokens; padded rows
        ended). ``steps_done``: per row, music already made; ``on_token(steps)`` after each token."""
        batch, start = prompt.shape
        end = start + max_new_tokens
        device = self.device
        ids = torch.full((batch, end), self.pad, dtype=torch.long, device=device)
        ids[:, :start] = prompt
        # The bookkeeping of a token (which rows go on, the music made) is a few numpy ops on the
        # host: as torch ops at batch 1 they cost a few microseconds each, more than the arithmetic.
        state = _Bookkeeping(self, batch, steps_done, steps_needed)
        written = ids.numpy() if device.type == "cpu" else None  # CPU: ids written through numpy
        cache = self.step.new_cache(batch)
        length = start
        position, logits = self._prefill(ids, length, cache)
        while length < end:
            # the next token's scores in float32, as model.generate takes them
            scores = logits if logits.dtype == torch.float32 else logits.to(torch.float32)
            window = ids[:, :length]
            for processor in self.processors:  # as LogitsProcessorList, without its per-call inspect
                scores = processor(window, scores)
            drawn = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)  # [batch, 1]
            token, drawn = state.pad_ended(drawn)
            if written is not None:
                written[:, length] = token
            else:
                ids[:, length] = drawn[:, 0]
            length += 1
            state.count(token)
            if on_token is not None:
                on_token(torch.from_numpy(state.steps))
            if not state.unfinished.any() or length == end:
                break
            # A token for the last slot of the context ends the window, as in model.generate's windows.
            if position == self.context - 1:
                position, logits = self._prefill(ids, length, cache)
            else:
                logits = self.step(drawn, position, cache, last_only=True)[0][:, -1]
                position += 1
        return ids[:, :length]

    def _prefill(self, ids: torch.Tensor, length: int, cache: torch.Tensor):
        """The most recent tokens that fit, run from position 0 (overwriting the cache): returns the
        next position and the last token's logits."""
        keep = length if length < self.context else reprime_length(self.context)
        return keep, self.step(ids[:, length - keep : length], 0, cache, last_only=True)[0][:, -1]


class _Bookkeeping:
    """Per row, on the host: whether it goes on, and the TIME_SHIFT steps of music it has made."""

    def __init__(self, sampler: LeanSampler, batch: int, steps_done, steps_needed):
        self.pad, self.eos, self.needed = sampler.pad, sampler.eos, steps_needed
        self.steps_of_id = None if sampler.steps_of_id is None else sampler.steps_of_id.numpy()
        self.steps = np.zeros(batch, np.int64) if steps_done is None else steps_done.cpu().numpy().copy()
        self.unfinished = np.ones(batch, bool)

    def pad_ended(self, drawn: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """The drawn tokens on the host and as the next step's input, <pad> in rows that have ended."""
        token = drawn.cpu().numpy()[:, 0]
        if self.unfinished.all():
            return token, drawn
        token = np.where(self.unfinished, token, self.pad)
        return token, torch.from_numpy(token[:, None]).to(drawn.device)

    def count(self, token: np.ndarray) -> None:
        """A row ends at <eos>, a sampled <pad>, or once its music lasts ``steps_needed``."""
        self.unfinished &= (token != self.eos) & (token != self.pad)
        if self.steps_of_id is not None:
            self.steps = self.steps + self.steps_of_id[np.minimum(token, len(self.steps_of_id) - 1)]
            if self.needed is not None:
                self.unfinished &= self.steps < self.needed


def sampling_processors(
    grammar, temperature: float, top_k: int, top_p: float, min_p, suppress=(), device="cpu"
):
    """The processors ``model.generate`` would run for these settings, in its order: tokens
    suppressed, the grammar, then temperature, top-k, top-p and min-p (transformers' own warpers)."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        SuppressTokensLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if suppress:
        processors.append(SuppressTokensLogitsProcessor(list(suppress), device=device))
    if grammar is not None:
        processors.append(grammar)
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p))
    if min_p is not None:
        processors.append(MinPLogitsWarper(min_p=min_p))
    return processors


__all__ = [
    "ONNX_INPUTS",
    "ONNX_OUTPUTS",
    "DecoderStep",
    "LeanSampler",
    "export_onnx",
    "reprime_length",
    "sampling_processors",
    "supports_lean_decoding",
]
