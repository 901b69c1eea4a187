"""Install a trained checkpoint as the model embedded in hf_music (hf_music/assets/default_model).

    bash scripts/gpu_recipe.sh runs/gpu_out            # trains runs/gpu_default/best, evaluates it
    python scripts/embed_default_model.py --checkpoint runs/gpu_default/best \\
        --evaluation runs/gpu_out/evaluation.json

Writes weights, config, tokenizer (tokenizer_config.json and the fast tokenizer.json), generation
config, the package's current code files and custom_generate/ (so the folder loads with plain
transformers and trust_remote_code=True, like any checkpoint), the run record with the
evaluations added, and the model card rendered from it (CC BY-NC-SA 4.0: trained on MAESTRO).
Refuses weights over --max_mib. The files are byte copies of the checkpoint's except the
tokenizer, code and card, which the package writes, so the embedded folder itself can be
refreshed after a code change:

    python scripts/embed_default_model.py --checkpoint hf_music/assets/default_model
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from hf_music.hub import CHECKPOINT_FILES, HubError, assemble_repo
from hf_music.resources import DEFAULT_MODEL_DIR
from hf_music.run_record import RECORD_FILE, RunRecordError, load_evaluations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--evaluation", default=None, help="JSON of scripts/evaluate.py --json")
    parser.add_argument("--max_mib", type=float, default=16.0, help="largest weights file accepted")
    parser.add_argument("--title", default="hf_music's embedded Music Transformer")
    args = parser.parse_args(argv)
    weights = Path(args.checkpoint) / "model.safetensors"
    if weights.is_file() and weights.stat().st_size > args.max_mib * 2**20:
        print(
            f"{weights} is {weights.stat().st_size / 2**20:.1f} MiB, over --max_mib {args.max_mib}",
            file=sys.stderr,
        )
        return 2
    try:
        evaluations = load_evaluations(args.evaluation) if args.evaluation else []
        with tempfile.TemporaryDirectory() as tmp:
            # Only the checkpoint's data files: code, custom_generate and card come from the package.
            staged = Path(tmp) / "checkpoint"
            staged.mkdir()
            for name in (*CHECKPOINT_FILES, "tokenizer_config.json", RECORD_FILE):
                if (Path(args.checkpoint) / name).is_file():
                    shutil.copy2(Path(args.checkpoint) / name, staged / name)
            folder = assemble_repo(
                staged, DEFAULT_MODEL_DIR, "hf_music/default_model", evaluations=evaluations,
                embedded=True, title=args.title,
            )  # fmt: skip
    except (HubError, RunRecordError, OSError) as error:
        print(f"embed_default_model: {error}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    print(f"embedded {args.checkpoint} in {folder} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
