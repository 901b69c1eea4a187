"""Files shipped inside the package: demo prompts (MAESTRO, CC BY-NC-SA 4.0)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
PROMPTS_DIR = ASSETS / "prompts"


def bundled_prompts() -> dict[str, Path]:
    """Name -> path of the bundled MIDI prompts (see assets/prompts/README.md for attribution)."""
    return {path.stem: path for path in sorted(PROMPTS_DIR.glob("*.mid"))}
