"""The README stays a front page, and no link in the docs leads nowhere.

The README once grew to 23.5 KB, most of it a benchmark log with lines of 1,400
characters; the log now lives in docs/BENCHMARKS.md. These tests keep the README short
and readable, and check every relative link of README.md and docs/ (subfolders too),
anchors included (GitHub's heading slugs), so moving a section or renaming a file cannot
leave a dead link behind; a repository file named in a code span (`tests/unit/x.py`)
must exist too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
README_MAX_BYTES = 10_000
MAX_LINE_CHARS = 200
WRAPPED = [README, ROOT / "docs" / "BENCHMARKS.md"]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# A repository file in a code span: a top-level folder of the repo, then a path ending in
# a file name with an extension (`deploy/local/lib.sh`, `tests/unit/test_docs.py::name`).
_REPO_FILE = re.compile(
    r"(?<![\w./-])((?:streamer|tests|deploy|benchmarks|docs|examples|\.ci)/[\w./-]*\.[a-z]+)\b")


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks, with code spans blanked out."""
    return _CODE_SPAN.sub("``", _FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", markdown)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: str) -> list[str]:
    prose = _prose(markdown)
    return _INLINE_LINK.findall(prose) + _REFERENCE_DEF.findall(prose)


def broken_links(path: Path, root: Path) -> list[str]:
    """Relative links of ``path`` whose file, or whose heading anchor, does not exist."""
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto: not checked here
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: ({target})"
        if not linked.exists():
            problems.append(f"{where}: no such file {linked}")
        elif (anchor and linked.suffix == ".md"
              and anchor not in anchors(linked.read_text(encoding="utf-8"))):
            problems.append(f"{where}: no heading with anchor #{anchor} in {linked.name}")
    return problems


def missing_files(path: Path, root: Path) -> list[str]:
    """Repository files named in ``path``'s code spans that do not exist."""
    spans = _CODE_SPAN.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))
    named = {match for span in spans for match in _REPO_FILE.findall(span)}
    return sorted(f"{path.relative_to(root)}: `{name}` does not exist"
                  for name in named if not (root / name).exists())


def test_readme_is_under_10_kb() -> None:
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes; keep it a front page under {README_MAX_BYTES} "
        "(details belong in docs/)"
    )


@pytest.mark.parametrize("path", WRAPPED, ids=lambda p: p.name)
def test_no_line_over_200_characters(path: Path) -> None:
    long_lines = [
        f"{path.name}:{number}: {len(line)} characters"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_LINE_CHARS
    ]
    assert not long_lines, "\n".join(long_lines)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(path: Path) -> None:
    problems = broken_links(path, ROOT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_files_named_in_code_spans_exist(path: Path) -> None:
    problems = missing_files(path, ROOT)
    assert not problems, "\n".join(problems)


def test_readme_links_every_doc() -> None:
    linked = {target.partition("#")[0] for target in links(README.read_text(encoding="utf-8"))}
    expected = {f"docs/{name}" for name in ("ARCHITECTURE.md", "BENCHMARKS.md",
                                              "CONFIGURATION.md", "LOCAL_STACK.md",
                                              "OPERATIONS.md")}
    assert expected <= linked, f"README does not link {sorted(expected - linked)}"


# The checker itself, on files made for the purpose: it must catch what it is for.


def test_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# A\n\n## Exactly once: the argument\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/A.md) [ok anchor](docs/A.md#exactly-once-the-argument)\n"
        "[gone](docs/GONE.md) [bad anchor](docs/A.md#no-such-heading)\n"
        "[web](https://example.com/x.md) [self](#missing-here)\n"
        "```\n[in code](docs/IN_CODE.md)\n```\n"
        "`[in a span](docs/SPAN.md)`\n"
        "[ref]: docs/REF_GONE.md\n"
    )
    problems = broken_links(page, tmp_path)
    reported = "\n".join(problems)
    assert len(problems) == 4, reported
    for expected in ("GONE.md", "#no-such-heading", "#missing-here", "REF_GONE.md"):
        assert expected in reported


def test_checker_reports_a_named_file_that_is_gone(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "here.py").write_text("")
    page = tmp_path / "README.md"
    page.write_text(
        "Run `pytest tests/here.py::test_x` and `tests/gone.py`; the job label\n"
        "`streamer/streamer` and the folder `tests/` are no files.\n"
        "```\ntests/in_a_block.py\n```\n"
    )
    assert missing_files(page, tmp_path) == ["README.md: `tests/gone.py` does not exist"]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Exactly once: the argument", "exactly-once-the-argument"),
        ("Recount from an earlier offset (new state side by side)",
         "recount-from-an-earlier-offset-new-state-side-by-side"),
        ("2026-12-03, from 14:00: p99 and flush rounds",
         "2026-12-03-from-1400-p99-and-flush-rounds"),
        ("The `max` scenario", "the-max-scenario"),
        ("[Linked](x.md) heading", "linked-heading"),
    ],
)
def test_slug_follows_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors() -> None:
    text = "# Notes\n## Setup\n```\n# not a heading\n```\n## Setup\n"
    assert anchors(text) == {"notes", "setup", "setup-1"}
