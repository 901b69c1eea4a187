"""The README is a front door and the docs hold together: its length, every relative link and
anchor in README.md and docs/*.md, and the README's test command being the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
CI_RUN = REPO_ROOT / ".ci" / "run"
README_MAX_LINES = 250

# [text](target) or ![alt](target): the target up to a space or ')' (a title may follow a space).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a link-like string in code is code)."""
    lines, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline code marks and links dropped, lower case, every
    character but letters, digits, '_', '-' and spaces removed, spaces made '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = "".join(ch for ch in text.lower() if ch.isalnum() or ch in "_- ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        result.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return result


def relative_links(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        targets += LINK.findall(line)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # no http:, mailto: ...


def test_github_slug_follows_githubs_rules():
    assert github_slug("Throughput on the H100") == "throughput-on-the-h100"
    assert (
        github_slug("NOTE_OFF events or durations, at equal training compute (indicative)")
        == "note_off-events-or-durations-at-equal-training-compute-indicative"
    )
    assert github_slug("The fast tokenizer and the `text` form") == "the-fast-tokenizer-and-the-text-form"


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading '#{anchor}' in {linked.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


def linked_files(path: Path) -> set[Path]:
    return {(path.parent / t.partition("#")[0]).resolve() for t in relative_links(path)}


def test_docs_index_links_every_doc():
    index = REPO_ROOT / "docs" / "README.md"
    assert index in DOCS, "docs/README.md is the index of docs/"
    missing = [p.name for p in DOCS if p != index and p.resolve() not in linked_files(index)]
    assert not missing, f"docs/README.md does not link {missing}"
    assert index.resolve() in linked_files(README), "README.md links docs/README.md"


def readme_command(number: int) -> str:
    """The command on the line after the README's '# (N) ...' comment."""
    lines = README.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"# ({number}) "))
    return lines[index + 1].strip()


def test_readme_test_command_is_the_one_ci_runs():
    ci_commands = [line.strip() for line in CI_RUN.read_text().splitlines() if line.startswith("bash ")]
    assert ci_commands == [readme_command(2)]


def test_readme_quick_start_composes_with_the_cli():
    assert readme_command(1).endswith("python -m hf_music --out piece.mid")
