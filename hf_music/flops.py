"""Training FLOPs and model-FLOPs utilisation (MFU), as nanoGPT and the PaLM paper count them."""

from __future__ import annotations

# Dense bf16 peak FLOP/s by device-name fragment (datasheets, without sparsity). H100 is the SXM
# part; an H100 PCIe peaks at 756 TFLOP/s, so MFU on one is understated by this table.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU from its name, None when the table does not know it."""
    return next((value for key, value in PEAK_FLOPS.items() if key in device_name), None)


def training_flops_per_token(config, block_size: int) -> float:
    """6 x weights (forward + backward) plus 12 x layers x width x context for attention scores.

    The PaLM paper's count (appendix B), as nanoGPT's estimate_mfu: position embeddings are
    left out (a lookup, not a product); the tied output projection is counted once.
    """
    weights = 12 * config.n_layer * config.n_embd**2 + config.vocab_size * config.n_embd
    return 6 * weights + 12 * config.n_layer * config.n_embd * block_size
