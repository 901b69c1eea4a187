"""Write the in-browser page (space/browser/) for a checkpoint: `hf-music export-web --model CKPT --out DIR`.

DIR gets index.html and music.js (the page), model.onnx (hf_music.decoding's step with its growing cache),
vocab.json (token names -> ids, the time step, the empty cache's shape, the context, the grammar's limits) and ort/
(onnxruntime-web's wasm build, copied from space/browser/node_modules after `npm install` there).
Serve DIR with `python -m http.server --directory DIR` and open it: the music is made in the browser.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parents[2] / "space" / "browser"
PAGE_FILES = ("index.html", "music.js")
ORT_DIST = PAGE_DIR / "node_modules" / "onnxruntime-web" / "dist"
# The wasm build only (no WebGPU/WebGL): the loader, its worker module and the 14 MB runtime.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="hf-music export-web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)"
    )
    parser.add_argument("--out", required=True, help="folder to write the page into")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    try:
        out = export_web(args.model, args.out)
    except (ValueError, OSError) as error:
        sys.exit(f"hf-music export-web: error: {error}")
    ort_note = "" if (out / "ort").is_dir() else f" (no ort/: run `npm install` in {PAGE_DIR}, then again)"
    print(f"wrote {out}{ort_note}; serve it with: python -m http.server --directory {out}")
    return out


def export_web(model_name_or_path: str | None, out_dir) -> Path:
    """Write the page, model.onnx, vocab.json and (when installed) ort/ into OUT_DIR; returns it."""
    from hf_music.decoding import export_onnx
    from hf_music.music_transformer.grammar import GRAMMAR_DEFAULTS, EventLayout
    from hf_music.resources import load_model

    missing = [name for name in PAGE_FILES if not (PAGE_DIR / name).is_file()]
    if missing:
        raise OSError(f"the page's files {missing} are not in {PAGE_DIR} (export-web runs from a checkout)")
    model, tokenizer = load_model(model_name_or_path, device="cpu")
    layout = EventLayout.of(tokenizer)  # a ValueError for a vocabulary without performance events
    if layout.merged:
        raise ValueError(f"{model_name_or_path}: the page samples events, and this vocabulary has BPE merges")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, out / name)
    export_onnx(model.float().eval(), out / "model.onnx")
    c = model.config
    settings = model.generation_config
    vocab = {
        "tokens": dict(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])),
        "time_step": layout.time_step,
        "past_shape": [c.n_layer, 2, 1, c.n_head, 0, c.n_embd // c.n_head],  # the empty (growing) cache
        "context": c.n_positions,  # events the cache holds at most: the page re-primes there
        "grammar": {name: getattr(settings, name, default) for name, default in GRAMMAR_DEFAULTS.items()},
    }
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    if all((ORT_DIST / name).is_file() for name in ORT_FILES):
        (out / "ort").mkdir(exist_ok=True)
        for name in ORT_FILES:
            shutil.copyfile(ORT_DIST / name, out / "ort" / name)
    return out


if __name__ == "__main__":
    main()
