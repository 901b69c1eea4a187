"""Install a trained checkpoint as the model embedded in hf_music (hf_music/assets/default_model).

    bash scripts/gpu_recipe.sh runs/gpu_out            # trains runs/gpu_default/best, evaluates it
    python scripts/embed_default_model.py --checkpoint runs/gpu_default/best \\
        --evaluation runs/gpu_out/evaluation.json

Writes weights, config, tokenizer, generation config, the model's code files (so the folder
loads with plain transformers and trust_remote_code=True, like any checkpoint), the run
record with the evaluations added, and the model card rendered from it (CC BY-NC-SA 4.0:
trained on MAESTRO). Refuses weights over --max_mib.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_music.hub import HubError, assemble_repo
from hf_music.resources import DEFAULT_MODEL_DIR
from hf_music.run_record import RunRecordError, load_evaluations


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
        folder = assemble_repo(
            args.checkpoint, DEFAULT_MODEL_DIR, "hf_music/default_model", evaluations=evaluations,
            embedded=True, title=args.title,
        )  # fmt: skip
    except (HubError, RunRecordError, OSError) as error:
        print(f"embed_default_model: {error}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    print(f"embedded {args.checkpoint} in {folder} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
