"""The sample in docs/STATEMENTS.md is what the product writes for the documented inputs
(the test month, the deploy/examples card and parties; tests/reports/sample.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reports.conftest import ClosedMonth
from tests.reports.sample import ROOT, build

DOCS = ROOT / "docs" / "STATEMENTS.md"


def normalized(text: str) -> str:
    """Without what a rebuilt ledger changes (sample.VARYING)."""
    text = re.sub(r'"committed_at": "[^"]*"', '"committed_at": "…"', text)
    text = re.sub(r'"url": "[^"]*"', '"url": "…"', text)
    return re.sub(r"(?m)^(HEAD(\t[^\t\n]*){3}\t)[0-9a-f]{32}\t", r"\1…\t", text)


def test_the_docs_show_what_the_product_writes(closed_month: ClosedMonth,
                                               tmp_path: Path) -> None:
    sample = normalized(build(closed_month.location, tmp_path))
    assert sample.count("```") == 6 and "LI01.02" in sample and '"payable"' in sample
    assert sample in normalized(DOCS.read_text()), (
        "docs/STATEMENTS.md's sample is out of date: regenerate it with "
        "`python -m tests.reports.sample DIR`")
