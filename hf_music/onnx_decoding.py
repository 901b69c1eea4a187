"""The lean decoder's step on onnxruntime: the model as one ONNX graph whose key/value cache is
updated in place, for the fastest CPU sampling (``backend="onnx"`` and ``"onnx-int8"`` of
`hf_music.generate_ids`; the ``onnx`` extra).

Why: at batch 1 a step of the default model is ~60 small tensor operations, and PyTorch's dispatch
of each (a few microseconds) cost as much as the arithmetic. onnxruntime runs the same graph from
C++ with its own matrix kernels (MLAS), and its ``GroupQueryAttention`` operator (com.microsoft,
the one onnxruntime-genai decodes LLMs with) writes each token's keys and values into a
preallocated cache bound as both input and output, so a step moves no cache.

The graph is written here node by node from the model's own parameters (GPT-2's block: layer norm,
fused QKV projection, attention, projection, layer norm, tanh-GELU MLP, residuals), not exported
by tracing: the traced export cannot express an in-place cache. It computes what `DecoderStep`
computes, in float32, to rounding (within 1e-4 in the logits, tested): the same distribution, but
not always the same ids for a seed as ``model.generate``; ``backend="lean"`` gives those.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from .decoding import supports_lean_decoding

GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # GPT-2's tanh approximation
GELU_EXACT = ("gelu",)


def supports_onnx_decoding(model) -> bool:
    """Whether the graph computes this model: a float32 GPT-2 model the lean decoder computes, with a
    GELU activation, on the CPU."""
    weight = model.lm_head.weight if hasattr(model, "lm_head") else None
    return (
        supports_lean_decoding(model)
        and weight is not None
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and model.config.activation_function in GELU_TANH + GELU_EXACT
    )


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).cpu().numpy()


class _GraphWriter:
    """Collects the nodes and weights (initializers) of the decoding graph."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.weights = [], []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.weights.append(self.numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, domain: str = "", **attributes) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], domain=domain, **attributes))
        return output

    def linear(self, x: str, weight: torch.Tensor, bias: torch.Tensor, name: str) -> str:
        """x @ W + b: GPT-2's Conv1D keeps W as [in, out]."""
        product = self.node("MatMul", [x, self.weight(f"{name}.weight", _array(weight))], f"{name}.product")
        return self.node("Add", [product, self.weight(f"{name}.bias", _array(bias))], f"{name}.out")

    def layer_norm(self, x: str, module, name: str) -> str:
        scale, bias = (
            self.weight(f"{name}.weight", _array(module.weight)),
            self.weight(f"{name}.bias", _array(module.bias)),
        )
        return self.node(
            "LayerNormalization", [x, scale, bias], f"{name}.out", axis=-1, epsilon=float(module.eps)
        )


def decoding_graph(model, last_only: bool = True):
    """The ONNX model of one decoding step (or prefill) of `model` with an in-place cache.

    Inputs: ``input_ids`` int64 [batch, tokens], ``position_ids`` int64 [tokens] (the tokens'
    positions), ``seqlens_k`` int32 [batch] (positions filled after the tokens, minus one),
    ``total_length`` int32 [] (positions filled after the tokens) and per layer ``past_key_i`` and
    ``past_value_i`` float32 [batch, heads, max_len, head_dim]. Outputs: ``logits`` float32 [batch,
    vocab] of the last token, and ``present_key_i`` / ``present_value_i``: bind each to its past's
    buffer and onnxruntime writes the tokens' keys and values into it in place.
    """
    from onnx import TensorProto, helper

    config, transformer = model.config, model.transformer
    heads, head_dim = config.n_head, config.n_embd // config.n_head
    graph = _GraphWriter()
    hidden = graph.node(
        "Add",
        [
            graph.node(
                "Gather", [graph.weight("wte", _array(transformer.wte.weight)), "input_ids"], "tokens"
            ),
            graph.node(
                "Gather", [graph.weight("wpe", _array(transformer.wpe.weight)), "position_ids"], "positions"
            ),
        ],
        "embedded",
    )
    scale = 1.0 / head_dim**0.5 if config.scale_attn_weights else 1.0
    gelu = "FastGelu" if config.activation_function in GELU_TANH else "Gelu"
    cache_inputs, cache_outputs = [], []
    for i, block in enumerate(transformer.h):
        qkv = graph.linear(
            graph.layer_norm(hidden, block.ln_1, f"h{i}.ln_1"),
            block.attn.c_attn.weight,
            block.attn.c_attn.bias,
            f"h{i}.qkv",
        )
        names = [f"past_key_{i}", f"past_value_{i}"]
        attention = f"h{i}.attention"
        graph.nodes.append(
            helper.make_node(
                "GroupQueryAttention", [qkv, "", "", *names, "seqlens_k", "total_length"],
                [attention, f"present_key_{i}", f"present_value_{i}"], domain="com.microsoft",
                num_heads=heads, kv_num_heads=heads, scale=scale,
            )
        )  # fmt: skip
        cache_inputs += names
        cache_outputs += [f"present_key_{i}", f"present_value_{i}"]
        projected = graph.linear(attention, block.attn.c_proj.weight, block.attn.c_proj.bias, f"h{i}.proj")
        hidden = graph.node("Add", [hidden, projected], f"h{i}.residual_1")
        inner = graph.linear(
            graph.layer_norm(hidden, block.ln_2, f"h{i}.ln_2"),
            block.mlp.c_fc.weight,
            block.mlp.c_fc.bias,
            f"h{i}.fc",
        )
        inner = graph.node(gelu, [inner], f"h{i}.gelu", domain="com.microsoft")
        hidden = graph.node(
            "Add",
            [hidden, graph.linear(inner, block.mlp.c_proj.weight, block.mlp.c_proj.bias, f"h{i}.mlp")],
            f"h{i}.residual_2",
        )
    if last_only:  # what sampling needs: the last token's logits, [batch, vocab]
        hidden = graph.node(
            "Gather", [hidden, graph.weight("last", np.array(-1, np.int64))], "last_hidden", axis=1
        )
    last = graph.layer_norm(hidden, transformer.ln_f, "ln_f")
    head = graph.weight("lm_head", _array(model.lm_head.weight).T)
    graph.node("MatMul", [last, head], "logits")

    def tensor(name, dtype, shape):
        return helper.make_tensor_value_info(name, dtype, shape)

    cache_shape = ["batch", heads, "max_len", head_dim]
    inputs = [
        tensor("input_ids", TensorProto.INT64, ["batch", "tokens"]),
        tensor("position_ids", TensorProto.INT64, ["tokens"]),
        tensor("seqlens_k", TensorProto.INT32, ["batch"]),
        tensor("total_length", TensorProto.INT32, []),
    ] + [tensor(name, TensorProto.FLOAT, cache_shape) for name in cache_inputs]
    logits_shape = ["batch", config.vocab_size] if last_only else ["batch", "tokens", config.vocab_size]
    outputs = [tensor("logits", TensorProto.FLOAT, logits_shape)]
    outputs += [tensor(name, TensorProto.FLOAT, cache_shape) for name in cache_outputs]
    onnx_graph = helper.make_graph(graph.nodes, "music_transformer_step", inputs, outputs, graph.weights)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    onnx_model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="hf_music")
    onnx_model.ir_version = 9
    return onnx_model


WEIGHTS = ("float32", "int8")
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {weights: (versions, step)}


def _quantized(graph):
    """The graph with every MatMul by a weight in onnxruntime's MatMulNBits: int8 weights in blocks of
    32 with a float scale each, int8 activations (accuracy level 4, the fast VNNI kernels; levels 0-3
    ran 40x slower here). On 40 blocks of MAESTRO test the embedded model's NLL rose by 0.0079 nats/event
    (scripts/compare_backends.py)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # The quantizer's module calls logging.basicConfig(level=INFO) on import: undo it for the caller.
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.handlers[:], root.level = handlers, level
    quantizer = MatMulNBitsQuantizer(graph, bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer_logger = logging.getLogger(MatMulNBitsQuantizer.__module__)
    quantizer_level = quantizer_logger.level
    quantizer_logger.setLevel(logging.WARNING)  # one INFO line per matrix otherwise
    try:
        quantizer.process()
    finally:
        quantizer_logger.setLevel(quantizer_level)
    return quantizer.model.model


def graph_session(model, weights: str = "float32", last_only: bool = True, threads: int = 1):
    """An onnxruntime session of `decoding_graph` (``last_only=False``: every token's logits, to
    score whole blocks), its matrix products in ``weights`` (float32, or int8 by `_quantized`).

    One thread by default: a step's products are too small to share at batch 1, and onnxruntime's
    spinning threads ran a step 2-5x slower as soon as another process used a core of this 2-core
    machine (PyTorch's lean step degrades far less)."""
    try:
        import onnx  # noqa: F401  (decoding_graph writes the graph with it)
        import onnxruntime
    except ModuleNotFoundError as error:  # the name stays, so the CLI names the extra too
        raise ModuleNotFoundError(
            f"the onnx backends need the onnx extra ({error.name} is not installed): pip install 'hf_music[onnx]'",
            name=error.name,
        ) from None
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if not supports_onnx_decoding(model):
        raise ValueError(f"{type(model).__name__} is not a float32 CPU GPT-2 model the ONNX step computes")
    graph = decoding_graph(model, last_only=last_only)
    if weights == "int8":
        graph = _quantized(graph)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: not its shape-merging notes on the graph
    return onnxruntime.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


class OnnxDecoderStep:
    """`DecoderStep`'s interface on onnxruntime: ``step(input_ids, position, cache, last_only=True)
    -> (logits [batch, 1, vocab], cache)``, the cache (``new_cache``) written in place.

    ``weights="int8"`` quantizes the matrix products (`_quantized`): 2-3x faster on this CPU, at a
    cost in NLL the docs give. Build it with `onnx_step`, which keeps one per model and settings and
    builds a new one once the model's parameters change (training, loading weights).
    """

    def __init__(self, model, weights: str = "float32", threads: int = 1):
        config = model.config
        self.layers, self.heads = config.n_layer, config.n_head
        self.head_dim, self.max_len = config.n_embd // config.n_head, config.n_positions
        self.vocab_size = config.vocab_size
        self.device = torch.device("cpu")
        self.session = graph_session(model, weights, threads=threads)

    def new_cache(self, batch: int) -> OnnxCache:
        return OnnxCache(self, batch)

    def __call__(self, input_ids: torch.Tensor, position: int, cache: OnnxCache, last_only: bool = True):
        if not last_only:
            raise ValueError("the ONNX step gives the last token's logits only")
        batch, tokens = input_ids.shape
        end = position + tokens
        if end > self.max_len:
            raise ValueError(f"positions up to {end} do not fit the context of {self.max_len}")
        if tokens == 1:  # decoding: the cache's own binding, its inputs written in place
            return cache.step(input_ids, position)[:, None], cache
        if batch > 1 and position > 0:  # GroupQueryAttention takes these one by one
            for offset in range(tokens):
                logits = self(input_ids[:, offset : offset + 1], position + offset, cache)[0]
            return logits, cache
        binding = cache.bound(self.session.io_binding())
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids.numpy()))
        binding.bind_cpu_input("position_ids", np.arange(position, end, dtype=np.int64))
        binding.bind_cpu_input("seqlens_k", np.full(batch, end - 1, np.int32))
        binding.bind_cpu_input("total_length", np.array(end, np.int32))
        binding.bind_output("logits")
        self.session.run_with_iobinding(binding)
        return torch.from_numpy(binding.get_outputs()[-1].numpy())[:, None], cache


class OnnxCache:
    """The keys and values of every layer ([batch, heads, max_len, head_dim] float32 each), and the
    binding of one decoding step, made once: binding 13 values per token cost a fifth of a step."""

    def __init__(self, step: OnnxDecoderStep, batch: int):
        from onnxruntime import OrtValue

        shape = (batch, step.heads, step.max_len, step.head_dim)
        self.values = [
            OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32)) for _ in range(2 * step.layers)
        ]
        self._session = step.session
        self._ids, self._position = np.zeros((batch, 1), np.int64), np.zeros(1, np.int64)
        self._seqlens, self._total = np.zeros(batch, np.int32), np.zeros((), np.int32)
        self._logits = np.zeros((batch, step.vocab_size), np.float32)
        self._binding = self.bound(self._session.io_binding())
        inputs = {"input_ids": self._ids, "position_ids": self._position, "seqlens_k": self._seqlens}
        for name, array in {**inputs, "total_length": self._total}.items():
            self._binding.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(array))  # shares memory
        self._binding.bind_ortvalue_output("logits", OrtValue.ortvalue_from_numpy(self._logits))

    def bound(self, binding):
        """``binding`` with each layer's past bound as input and as present output: updated in place."""
        for i, value in enumerate(self.values):
            name = f"{'key' if i % 2 == 0 else 'value'}_{i // 2}"
            binding.bind_ortvalue_input(f"past_{name}", value)
            binding.bind_ortvalue_output(f"present_{name}", value)
        return binding

    def step(self, input_ids: torch.Tensor, position: int) -> torch.Tensor:
        self._ids[:] = input_ids.numpy()
        self._position[0] = position
        self._seqlens[:] = position
        self._total[()] = position + 1
        self._session.run_with_iobinding(self._binding)
        return torch.from_numpy(self._logits.copy())  # a copy: the buffer is the next step's


def onnx_step(model, weights: str = "float32") -> OnnxDecoderStep:
    """The model's `OnnxDecoderStep` for these weights (one thread), built once (about 0.1 s) and
    kept until the model's parameters change (torch counts in-place writes: training, loading)."""
    try:
        versions = tuple(p._version for p in model.parameters())
    except RuntimeError:  # made under torch.inference_mode: no version counter, nor in-place training
        versions = None
    steps = _STEPS.setdefault(model, {})  # not on the model: copying it would copy the session
    if weights not in steps or steps[weights][0] != versions:
        steps[weights] = (versions, OnnxDecoderStep(model, weights))
    return steps[weights][1]
