"""Create or update the hf_music Gradio Space on the Hugging Face Hub.

    python scripts/deploy_space.py --space_id me/music-transformer-demo --model_id me/music-transformer
    python scripts/deploy_space.py --space_id me/demo --dry_run out/space    # only write the folder

Uploads space/ (app, README with the Space YAML, requirements.txt, packages.txt) plus a copy
of the hf_music package, and sets the Space variable HF_MUSIC_MODEL to --model_id (without
it the Space uses the checkpoint embedded in hf_music). HF_TOKEN and HF_ENDPOINT are honoured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_music.hub import PUBLISH_ERRORS, deploy_space, publish_error_line, stage_space

SPACE_DIR = Path(__file__).resolve().parents[1] / "space"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space_id", required=True, help="namespace/name of the Space")
    parser.add_argument(
        "--model_id", default=None, help="model repo the Space loads (default: embedded model)"
    )
    parser.add_argument("--space_dir", default=str(SPACE_DIR))
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--hardware", default=None, help="e.g. cpu-upgrade, t4-small (billing applies)")
    parser.add_argument("--dry_run", default=None, metavar="OUT_DIR", help="only write the Space folder here")
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            folder = stage_space(args.space_dir, args.dry_run, args.model_id)
            print(f"dry run: wrote the Space folder to {folder}")
            return 0
        commit = deploy_space(
            args.space_dir, args.space_id, args.model_id, private=args.private, hardware=args.hardware
        )
    except PUBLISH_ERRORS as error:
        print(f"deploy_space: {publish_error_line(error)}", file=sys.stderr)
        return 2
    print(f"deployed to {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
