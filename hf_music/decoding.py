"""A lean incremental decoder for hf_music's own (GPT-2) model: one step per token against a
preallocated KV cache, and its ONNX export.

`DecoderStep` runs the model's own modules and parameters (nothing is copied, so it cannot drift
from the model) on ``input_ids`` [batch, tokens] at ``position`` (the index of the first token),
writing the tokens' keys and values into ``past`` [layers, 2, batch, heads, max_len, head_dim] at
position..position+tokens-1 and attending to the cache up to there. One call serves a prompt
(prefill, tokens > 1) or one decoding step (tokens = 1). In eager mode the cache is written in place
and only its filled part is read; `export_onnx` writes the same step as a graph whose cache is an
input (``past``) and an output (``present``), for onnxruntime (Python or web).

Why not ``model.generate``: at batch 1 a 3.8M-parameter model needs ~12 MFLOP per token, but
transformers' per-step machinery (cache objects, masks, processors, stopping checks) costs more than
the arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ONNX_INPUTS = ("input_ids", "position", "past")
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
    ``present`` is ``past`` itself, written in place. ``functional=True`` (the ONNX export) returns a
    new cache and attends over all of it with a mask, so the graph has no data-dependent shapes.
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

    def new_cache(self, batch: int, max_len: int | None = None, dtype=torch.float32) -> torch.Tensor:
        """An empty cache [layers, 2, batch, heads, max_len, head_dim] on the model's device."""
        shape = (self.layers, 2, batch, self.heads, max_len or self.max_len, self.head_dim)
        return torch.zeros(shape, dtype=dtype, device=self.lm_head.weight.device)

    def forward(self, input_ids: torch.Tensor, position, past: torch.Tensor):
        batch, tokens = input_ids.shape
        positions = torch.arange(tokens, device=input_ids.device) + position
        hidden = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        if self.functional:
            # Every cached key up to the token's own position: position + tokens <= max_len.
            keys_seen = torch.arange(past.shape[4], device=input_ids.device)[None, :] <= positions[:, None]
            end, mask = past.shape[4], keys_seen
        else:
            end = position + tokens
            mask = None if tokens == 1 else torch.ones(tokens, end, dtype=torch.bool).tril(position)
        layers = []
        for index, block in enumerate(self.transformer.h):
            hidden, layer_cache = self._block(block, hidden, past, index, position, positions, end, mask)
            layers.append(layer_cache)
        hidden = self.transformer.ln_f(hidden)
        logits = self.lm_head(hidden)
        return logits, torch.stack(layers) if self.functional else past

    def _block(self, block, hidden, past, index, position, positions, end, mask):
        batch, tokens, width = hidden.shape
        attn = block.attn
        x = block.ln_1(hidden).view(-1, width)
        qkv = torch.addmm(attn.c_attn.bias, x, attn.c_attn.weight)  # GPT-2's Conv1D: x @ W + b
        q, k, v = qkv.view(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.functional:
            keys = past[index, 0].index_copy(2, positions, k)
            values = past[index, 1].index_copy(2, positions, v)
            layer_cache = torch.stack((keys, values))
        else:
            past[index, :, :, :, position:end] = torch.stack((k, v))
            keys, values = past[index, 0, :, :, :end], past[index, 1, :, :, :end]
            layer_cache = None
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
        y = y.transpose(1, 2).reshape(-1, width)
        hidden = hidden + torch.addmm(attn.c_proj.bias, y, attn.c_proj.weight).view(batch, tokens, width)
        x = block.ln_2(hidden).view(-1, width)
        mlp = block.mlp
        x = mlp.act(torch.addmm(mlp.c_fc.bias, x, mlp.c_fc.weight))
        hidden = hidden + torch.addmm(mlp.c_proj.bias, x, mlp.c_proj.weight).view(batch, tokens, width)
        return hidden, layer_cache


def export_onnx(model, path, batch: int = 1, opset: int = 18) -> str:
    """Write the decoding step of `model` as an ONNX graph with its cache as input and output.

    Inputs: ``input_ids`` int64 [batch, tokens], ``position`` int64 [] (index of the first token),
    ``past`` float32 [layers, 2, batch, heads, max_len, head_dim]. Outputs: ``logits`` float32
    [batch, tokens, vocab], ``present`` (``past`` with the tokens' keys and values written at
    position..position+tokens-1). batch and tokens are dynamic; max_len is the model's n_positions.
    Needs the ``onnx`` extra (onnx, onnxscript). Returns the path.
    """
    step = DecoderStep(model, functional=True).eval()
    example = (
        torch.ones(batch, 2, dtype=torch.long),
        torch.tensor(0, dtype=torch.long),
        step.new_cache(batch),
    )
    batch_dim, tokens_dim = torch.export.Dim("batch"), torch.export.Dim("tokens", max=step.max_len)
    shapes = {"input_ids": {0: batch_dim, 1: tokens_dim}, "position": None, "past": {2: batch_dim}}
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            step, example, input_names=list(ONNX_INPUTS), output_names=list(ONNX_OUTPUTS),
            dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False,
        )  # fmt: skip
    program.save(str(path))
    return str(path)


__all__ = ["ONNX_INPUTS", "ONNX_OUTPUTS", "DecoderStep", "export_onnx", "supports_lean_decoding"]
