"""Publish a trained checkpoint to the Hugging Face Hub with its model card, in one commit.

    python scripts/push_to_hub.py --checkpoint runs/maestro/best --repo_id me/music-transformer
    python scripts/push_to_hub.py --checkpoint runs/maestro/best --repo_id me/music-transformer \\
        --evaluation runs/maestro/evaluation.json --samples piece1.mid piece1.wav --dry_run out/repo

The repo gets config, safetensors weights, tokenizer files, generation config, the model's
code (for trust_remote_code), README.md (the card rendered from model_card.md and the run
record), run_record.json (with the --evaluation results of scripts/evaluate.py --json added)
and samples when given. --dry_run only writes that
folder. HF_TOKEN (or `hf auth login`) and HF_ENDPOINT are honoured.
"""

from __future__ import annotations

import argparse
import sys

from hf_music.hub import PUBLISH_ERRORS, assemble_repo, publish_error_line, push_to_hub
from hf_music.run_record import RunRecordError, load_evaluations


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, help="a save_pretrained folder (train.py's OUTPUT_DIR/best)"
    )
    parser.add_argument("--repo_id", required=True, help="namespace/name on the Hub")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--evaluation", default=None, help="JSON written by scripts/evaluate.py --json")
    parser.add_argument("--samples", nargs="*", default=[], help="MIDI/WAV files to include under samples/")
    parser.add_argument(
        "--license", default=None, help="for models not trained on MAESTRO (which forces cc-by-nc-sa-4.0)"
    )
    parser.add_argument("--base_model", default=None, help="Hub id of the model this one was fine-tuned from")
    parser.add_argument("--dry_run", default=None, metavar="OUT_DIR", help="only write the repo folder here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        evaluations = load_evaluations(args.evaluation) if args.evaluation else []
        if args.dry_run:
            folder = assemble_repo(
                args.checkpoint, args.dry_run, args.repo_id, evaluations=evaluations, samples=args.samples,
                license=args.license, base_model=args.base_model,
            )  # fmt: skip
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            print(f"dry run: wrote {len(files)} files to {folder}: {', '.join(files)}")
            return 0
        commit = push_to_hub(
            args.checkpoint, args.repo_id, private=args.private, revision=args.revision,
            commit_message=args.commit_message, evaluations=evaluations, samples=args.samples, license=args.license,
            base_model=args.base_model,
        )  # fmt: skip
    except (*PUBLISH_ERRORS, RunRecordError) as error:
        print(f"push_to_hub: {publish_error_line(error)}", file=sys.stderr)
        return 2
    print(f"pushed to {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
