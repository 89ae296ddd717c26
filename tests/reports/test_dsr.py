"""DSR files: the checks dsrf does not make (FOOT counts, SummaryRecordId references,
summary usages, escaping, cells per record type) and the usage invariants against ground
truth from the generated events."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from collections import Counter, defaultdict
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from streamer.ledger import CatalogEntry
from streamer.reports.dsr import FIELDS, escape, read_records, record, write_dsr
from streamer.reports.parties import Parties
from streamer.reports.pricing import Pricing
from tests.reports.conftest import RATES, ClosedMonth

NAME = re.compile(r"DSR_(PADPIDA\w+?)_(PADPIDA\w+?)_([A-Za-z0-9-]+)_(\d{4}-\d{2})_([A-Z]{2})_"
                  r"(\d+)of(\d+)_(\d{8}T\d{6})\.tsv(\.gz)?")
MICRO = 1_000_000


def load(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode()


def reports(out: Path) -> dict[tuple[str, str], list[Path]]:
    """(recipient DPID, territory) -> the report's files in order."""
    found: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(out.iterdir()):
        match = NAME.fullmatch(path.name)
        assert match, path.name
        found[(match[1], match[5])].append(path)
    return {key: sorted(files, key=lambda p: int(NAME.fullmatch(p.name)[6]))  # type: ignore[index]
            for key, files in found.items()}


@pytest.fixture(scope="module")
def dsr_dir(pricing: Pricing, parties: Parties,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dsr")
    for recipient in ("label-a", "pub-x"):
        write_dsr(pricing, parties, recipient, out)
    return out


def check_report(files: list[Path]) -> list[list[str]]:
    """Structural checks of one report; returns its body records (all files)."""
    total_lines = 0
    body: list[list[str]] = []
    summaries_seen = None
    feet = []
    for number, path in enumerate(files, start=1):
        text = load(path)
        assert text.endswith("\n")
        lines = text.split("\n")[:-1]
        records = list(read_records(text))
        for cells in records:
            assert len(cells) == 1 + len(FIELDS[cells[0]]), cells[0]
        head, foot = records[0], records[-1]
        assert head[0] == "HEAD" and foot[0] == "FOOT"
        assert (head[6], head[7]) == (str(number), str(len(files)))
        summaries = [r for r in records if r[0] == "SY02.02"]
        if summaries_seen is None:
            summaries_seen = summaries
        assert summaries == summaries_seen  # every file has the same summaries
        blocks = [r for r in records[1:-1] if r[0] not in ("SY02.02",)]
        block_ids = list(dict.fromkeys(r[1] for r in blocks))
        assert foot[1] == str(len(lines))          # NumberOfLinesInFile, comments included
        assert foot[3] == str(len(summaries))      # NumberOfSummaryRecords
        assert foot[4] == str(len(block_ids))      # NumberOfBlocksInFile
        feet.append(foot)
        total_lines += len(lines)
        body += blocks
    all_blocks = list(dict.fromkeys(r[1] for r in body))
    assert all_blocks == [str(n) for n in range(1, len(all_blocks) + 1)]
    for foot in feet:
        assert foot[2] == str(total_lines)         # NumberOfLinesInReport
        assert foot[5] == str(len(all_blocks))     # NumberOfBlocksInReport
    # SummaryRecordId references and SY02 usages = the sum of their SU03 lines.
    assert summaries_seen is not None
    summary = {r[1]: r for r in summaries_seen}
    usages: Counter[str] = Counter()
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for index, cells in enumerate(body):
        if cells[0] != "SU03.02":
            continue
        following = []
        for later in body[index + 1:]:
            if later[0] != "LI01.02":
                break
            following.append(later)
        targets = {li[2] for li in following}
        if following:
            assert cells[3] == "" and len(targets) == 1  # named by its LI01 lines
            target = targets.pop()
        else:
            target = cells[3]
        assert target in summary
        assert summary[target][18] == cells[9]  # same ContentCategory
        usages[target] += int(cells[5])
        revenue[target] += Decimal(cells[6])
    for record_id, cells in summary.items():
        if cells[18].startswith("levy_"):  # a levy: summary-level allocation, no lines
            assert usages[record_id] == 0 and cells[12] and cells[13], cells
            assert cells[15] == cells[16] and Decimal(cells[16]) <= Decimal(cells[11])
            continue
        assert int(cells[8]) == usages[record_id], record_id
        assert Decimal(cells[11]) == revenue[record_id]
    return body


def test_every_report_is_consistent(dsr_dir: Path) -> None:
    found = reports(dsr_dir)
    assert len(found) == 6 + 3  # label-a: every territory with usage; pub-x: DE, FR, IS
    for files in found.values():
        check_report(files)


Allocations = Counter[tuple[str, int, tuple[tuple[str, Decimal, Decimal], ...]]]


def truth_by_report(closed: ClosedMonth, holder: str, territory: str) -> dict[str, Allocations]:
    """track -> multiset of (use, usages, ((right, share %, allocated usages), ...)) per
    catalog version with usage in the territory, for tracks the holder has a share in."""
    uses: Counter[tuple[str, str, str]] = Counter()
    entries: dict[str, CatalogEntry | None] = {}
    for e in closed.month.events:
        if e.country == territory:
            version = e.entry.version if e.entry else None
            uses[(e.track_id, e.use, str(version))] += 1
            entries[str(version)] = e.entry
    out: dict[str, Allocations] = {}
    mine = set()
    for track, _, version in uses:
        entry = entries[version]
        if entry is not None and any(h == holder for h, _ in (*entry.master, *entry.publishing)):
            mine.add(track)
    for (track, use, version), count in uses.items():
        if track not in mine:
            continue
        entry = entries[version]
        licensor: list[tuple[str, Decimal, Decimal]] = []
        if entry is not None:
            for right, shares in (("master", entry.master), ("publishing", entry.publishing)):
                for h, micro in shares:
                    if h == holder:
                        licensor.append((right, Decimal(micro) / 10_000,
                                         Decimal(count * micro) / MICRO))
        out.setdefault(track, Counter())[(use, count, tuple(sorted(licensor)))] += 1
    return out


@pytest.mark.parametrize(("holder", "dpid"), [("label-a", "PADPIDA2014111801Y"),
                                              ("pub-x", "PADPIDA2015020201X")])
def test_usages_and_allocations_match_ground_truth(closed_month: ClosedMonth, dsr_dir: Path,
                                                   holder: str, dpid: str) -> None:
    kinds = {"MakeAvailableRight": "master", "MechanicalRight": "publishing"}
    uses = {"UserMakeAvailableUserProvided": "create", "OnDemandStream": "play"}
    for (recipient, territory), files in reports(dsr_dir).items():
        if recipient != dpid:
            continue
        body = check_report(files)
        summary_use = {r[1]: uses[r[5]] for r in read_records(load(files[0]))
                       if r[0] == "SY02.02"}
        got: dict[str, Allocations] = {}
        track = ""
        for index, cells in enumerate(body):
            if cells[0] == "AS02.02":
                track = cells[3]
            if cells[0] != "SU03.02":
                continue
            licensor: list[tuple[str, Decimal, Decimal]] = []
            target = cells[3]
            for later in body[index + 1:]:
                if later[0] != "LI01.02":
                    break
                target = later[2]
                assert later[3] == dict(pub="Publisher X \\| Songs", lab="Label A Records")[
                    holder[:3]]
                licensor.append((kinds[later[7]], Decimal(later[6]), Decimal(later[10])))
            key = (summary_use[target], int(cells[5]), tuple(sorted(licensor)))
            got.setdefault(track, Counter())[key] += 1
        assert got == truth_by_report(closed_month, holder, territory), territory


def test_track_usages_equal_the_ledgers_track_rows(closed_month: ClosedMonth,
                                                   dsr_dir: Path) -> None:
    import duckdb
    con = duckdb.connect()
    con.register("t", closed_month.location.open("tracks").to_pyarrow_dataset())
    ledger = {(t, c): int(n) for t, c, n in con.execute(
        "SELECT track_id, country, sum(uses) FROM t GROUP BY ALL").fetchall()}
    for (_, territory), files in reports(dsr_dir).items():
        per_track: Counter[str] = Counter()
        track = ""
        for cells in check_report(files):
            if cells[0] == "AS02.02":
                track = cells[3]
            elif cells[0] == "SU03.02":
                per_track[track] += int(cells[5])
        for track, usages in per_track.items():
            assert usages == ledger[(track, territory)]


def test_escaping() -> None:
    assert escape("a\tb|c\\d\ne") == "a\\\tb\\|c\\\\d e"
    line = record("LI01.02", "1", "2", "X | Y\\Z\tW", None, None, "25", None, "0", "0", "1")
    separators = len(re.findall(r"(?<!\\)\t", line))
    assert separators == len(FIELDS["LI01.02"])  # the escaped TAB is not a separator
    assert next(iter(read_records(line)))[3] == "X \\| Y\\Z\tW"
    with pytest.raises(ValueError, match=r"LI01\.02: 3 cells"):
        record("LI01.02", "1", "2", "3")


def test_names_with_tabs_pipes_and_backslashes_are_escaped(dsr_dir: Path) -> None:
    text = "".join(load(p) for p in dsr_dir.iterdir())
    assert "Publisher X \\| Songs" in text
    assert "Back\\\\slash" in text
    assert "mystery\\\tholder" in text
    assert "Publisher X | Songs" not in text


def test_resource_cells_carry_title_artist_and_isrc(closed_month: ClosedMonth,
                                                    dsr_dir: Path) -> None:
    """AS02.02: ISRC, Title and DisplayArtistName are the latest the period's catalog
    versions give (a version without one does not blank it); no title: the track id."""
    latest: dict[str, dict[str, str]] = {}
    for event in closed_month.month.events:  # in day order
        names = latest.setdefault(event.track_id, {})
        for name in ("isrc", "title", "artist"):
            value = getattr(event.entry, name) if event.entry else None
            if value is not None:
                names[name] = value
    seen = set()
    for files in reports(dsr_dir).values():
        for cells in check_report(files):
            if cells[0] != "AS02.02":
                continue
            track = cells[3]
            names = latest[track]
            title = names.get("title", track)
            expected = (names.get("isrc", ""), title, names.get("artist", "Unknown Artist"))
            # read_records keeps an escaped pipe as \|
            assert (cells[4], cells[5], cells[7]) == tuple(
                cell.replace("|", "\\|") for cell in expected), track
            seen.add((bool(names.get("isrc")), "title" in names, title.startswith("Tab\t")))
    # Reports hold tracks with and without ISRC and title, and the title needing escapes.
    assert {(False, True, False), (True, True, False), (True, False, False),
            (True, True, True)} <= seen
    text = "".join(load(p) for p in dsr_dir.iterdir())
    assert "Tab\\\there \\| pipe \\\\ backslash" in text
    assert "Tab\there" not in text  # an unescaped TAB


def test_rebuilds_are_byte_identical_and_split_reports_hold_together(
        pricing: Pricing, parties: Parties, dsr_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_dsr(pricing, parties, "label-a", again)
    write_dsr(pricing, parties, "pub-x", again)
    assert {p.name: p.read_bytes() for p in again.iterdir()} == {
        p.name: p.read_bytes() for p in dsr_dir.iterdir()}
    split = tmp_path / "split"
    first = write_dsr(pricing, parties, "label-a", split, territory="US", max_file_bytes=1500,
                      gzip_over_bytes=1000)
    assert len(first[0].files) > 2 and all(n.endswith(".gz") for n in first[0].files)
    body = check_report(reports(split)[("PADPIDA2014111801Y", "US")])
    whole = check_report(reports(dsr_dir)[("PADPIDA2014111801Y", "US")])
    assert body == whole
    second = write_dsr(pricing, parties, "label-a", tmp_path / "split2", territory="US",
                       max_file_bytes=1500, gzip_over_bytes=1000)
    assert second[0].files == first[0].files  # gzip without timestamps: same bytes


def test_created_time_and_refusals(pricing: Pricing, parties: Parties, tmp_path: Path) -> None:
    from streamer.reports.source import ReportInputError
    report = write_dsr(pricing, parties, "pub-x", tmp_path, "DE",
                       created="2026-12-01T00:00:00Z")[0]
    (name,) = report.files
    assert name.endswith("_DE_1of1_20261201T000000.tsv")
    head = next(iter(read_records(load(tmp_path / name))))
    assert head[5] == "2026-12-01T00:00:00Z" and head[4] == report.message_id
    with pytest.raises(ReportInputError, match="does not receive DSR files for US"):
        write_dsr(pricing, parties, "pub-x", tmp_path, "US")
    with pytest.raises(ReportInputError, match="not a party that receives"):
        write_dsr(pricing, parties, "label-b", tmp_path)
    with pytest.raises(ReportInputError, match="must be in UTC"):
        write_dsr(pricing, parties, "pub-x", tmp_path, "DE", created="2026-12-01T00:00:00+01:00")


def test_a_territory_without_usage_gives_a_summary_only_report(
        pricing: Pricing, parties: Parties, tmp_path: Path) -> None:
    import dataclasses
    party = dataclasses.replace(parties.parties["pub-x"], dsr_territories=("JP",))
    registry = dataclasses.replace(parties, parties={**parties.parties, "pub-x": party})
    (report,) = write_dsr(pricing, registry, "pub-x", tmp_path)
    records = list(read_records(load(tmp_path / next(iter(report.files)))))
    assert [r[0] for r in records] == ["HEAD", "SY02.02", "FOOT"]
    assert records[1][8] == "0" and records[-1][1:] == ["10", "10", "1", "0", "0"]
    versions = ",".join(f"{k}={v}" for k, v in sorted(pricing.snapshot.versions.items()))
    assert f"# streamer: built from ledger table versions {versions};" in load(
        tmp_path / next(iter(report.files)))


def levy_bases(closed: ClosedMonth) -> Counter[tuple[str, str, str]]:
    """(territory, UseType, ContentCategory) -> the uses the example card's levies with a
    share for cmo-gema are charged on, counted from the generated events: levy#1 on every
    use of ai_generated tracks, levy#2 on creates of ai_assisted tracks in DE."""
    bases: Counter[tuple[str, str, str]] = Counter()
    for e in closed.month.events:
        if e.entry and e.entry.ai_origin == "ai_generated":
            bases[(e.country, "Use", "levy_ai_generated")] += 1
        if e.entry and e.entry.ai_origin == "ai_assisted" and e.use == "create" and (
                e.country == "DE"):
            bases[("DE", "UserMakeAvailableUserProvided", "levy_ai_assisted")] += 1
    return bases


def test_a_levy_only_recipient_gets_its_levies_as_summary_records(
        closed_month: ClosedMonth, pricing: Pricing, parties: Parties, tmp_path: Path) -> None:
    """cmo-gema has no usage lines, only levy shares (0.6 of levy#1, all of levy#2): one
    report per territory with a levy, HEAD, a summary per levy, FOOT; each summary says the
    uses the levy was charged on, the levy, and GEMA's allocation of both."""
    bases = levy_bases(closed_month)
    share = {"levy_ai_generated": Decimal("0.6"), "levy_ai_assisted": Decimal(1)}
    per_use = {"levy_ai_generated": Decimal("0.0005"), "levy_ai_assisted": Decimal("0.0002")}
    written = write_dsr(pricing, parties, "cmo-gema", tmp_path, created="2026-12-01T00:00:00Z")
    found = reports(tmp_path)
    assert {territory for (_, territory) in found} == {t for t, _, _ in bases}
    assert all(report.blocks == 0 for report in written)
    seen: Counter[tuple[str, str, str]] = Counter()
    for (recipient, territory), files in found.items():
        assert recipient == "PADPIDA2007040502I"
        check_report(files)
        records = list(read_records(load(files[0])))
        assert {r[0] for r in records} == {"HEAD", "SY02.02", "FOOT"}
        for cells in records[1:-1]:
            assert cells[6] == territory
            key = (territory, cells[5], cells[18])
            uses = bases[key]
            levy = (uses * per_use[cells[18]]).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
            mine = levy * share[cells[18]]
            assert (cells[8], Decimal(cells[11])) == (str(uses), levy), key
            assert (cells[12], cells[13]) == ("GEMA", "DPID::PADPIDA2007040502I")
            assert Decimal(cells[14]) == uses * share[cells[18]]  # AllocatedUsages, exact
            # Largest remainder: GEMA's part of the levy is its exact share rounded down,
            # or one cent more.
            allocated = Decimal(cells[16])
            floor = mine.quantize(Decimal("0.01"), ROUND_FLOOR)
            assert allocated in (floor, floor + Decimal("0.01")) and cells[15] == cells[16]
            seen[key] += 1
    assert seen == dict.fromkeys(bases, 1)  # every levy base once, nothing else


def test_a_recipient_with_usage_and_a_levy_gets_both_kinds_of_summary(
        closed_month: ClosedMonth, parties: Parties, tmp_path: Path) -> None:
    """pub-x given half of levy#1: its usage summaries, then one levy summary per
    territory, numbered on; the usage lines are the same as without the levy."""
    from streamer.reports.pricing import price
    from streamer.reports.rates import load_rate_card
    from streamer.reports.source import Period, open_snapshot
    card = tmp_path / "rates.toml"
    card.write_text(RATES.read_text().replace('{ "cmo-gema" = "0.6", "cmo-sacem" = "0.4" }',
                                              '{ "cmo-gema" = "0.5", "pub-x" = "0.5" }'))
    shared = price(open_snapshot(closed_month.location, 1, Period.parse("2026-11")),
                   load_rate_card(card))
    try:
        write_dsr(shared, parties, "pub-x", tmp_path / "mixed", "DE")
    finally:
        shared.close()
    ((_, files),) = reports(tmp_path / "mixed").items()
    body = check_report(files)
    records = list(read_records(load(files[0])))
    summaries = [r for r in records if r[0] == "SY02.02"]
    levy = [r for r in summaries if r[18].startswith("levy_")]
    assert [r[1] for r in summaries] == [str(n) for n in range(1, len(summaries) + 1)]
    assert len(levy) == 1 and summaries[-1] is levy[0] and len(summaries) > 1
    uses = levy_bases(closed_month)[("DE", "Use", "levy_ai_generated")]
    assert (levy[0][8], levy[0][12]) == (str(uses), escape("Publisher X | Songs"))
    assert Decimal(levy[0][14]) == uses * Decimal("0.5")
    assert any(r[0] == "SU03.02" for r in body)
    if VALIDATOR:
        validate(files)


VALIDATOR = os.environ.get("STREAMER_TEST_DSR_VALIDATOR")


def validate(files: list[Path]) -> str:
    """The reference validator's verdict on one report (all its files)."""
    assert VALIDATOR
    done = subprocess.run([VALIDATOR, *(p.name for p in files)], capture_output=True,
                          text=True, cwd=files[0].parent)
    assert done.returncode == 0 and "VALID:" in done.stdout, done.stdout[-2000:]
    return done.stdout


def zero_money_pricing(closed: ClosedMonth, tmp_path: Path) -> Pricing:
    """Usage agreed, no money: a card whose only entry prices a territory without usage,
    so every line is unpriced and every money cell is 0."""
    from streamer.reports.pricing import price
    from streamer.reports.rates import load_rate_card
    from streamer.reports.source import Period, open_snapshot
    card = tmp_path / "usage-only.toml"
    card.write_text('currency = "EUR"\n[[rate]]\nperiod = "2026-11"\nterritory = "JP"\n'
                    'use = "play"\nright = "master"\nper_use = "0.001"\n')
    return price(open_snapshot(closed.location, 1, Period.parse("2026-11")),
                 load_rate_card(card))


@pytest.mark.skipif(not VALIDATOR, reason="set STREAMER_TEST_DSR_VALIDATOR to the dsrf "
                    "validate script (/work/shared/tools/dsr-validator/setup.sh builds it)")
def test_the_reference_validator_accepts_every_kind_of_file(
        closed_month: ClosedMonth, dsr_dir: Path, pricing: Pricing, parties: Parties,
        tmp_path: Path) -> None:
    """Single files per territory (money from rates and pools, the card has levies), split
    numbered files plain and gzipped, a single gzipped file, a summary-only report (no
    usage), a usage-only report (every money cell 0) and a levy-only recipient's."""
    import dataclasses
    kinds: dict[str, list[list[Path]]] = {"single file per territory, money cells":
                                          list(reports(dsr_dir).values())}
    write_dsr(pricing, parties, "label-a", tmp_path / "split", territory="US",
              max_file_bytes=1500, gzip_over_bytes=10**9)
    write_dsr(pricing, parties, "label-a", tmp_path / "split-gz", territory="US",
              max_file_bytes=1500, gzip_over_bytes=1000)
    write_dsr(pricing, parties, "pub-x", tmp_path / "gz", territory="DE", gzip_over_bytes=1)
    party = dataclasses.replace(parties.parties["pub-x"], dsr_territories=("JP",))
    write_dsr(pricing, dataclasses.replace(parties, parties={**parties.parties,
                                                             "pub-x": party}),
              "pub-x", tmp_path / "empty")
    zero = zero_money_pricing(closed_month, tmp_path)
    try:
        write_dsr(zero, parties, "label-a", tmp_path / "zero")
    finally:
        zero.close()
    kinds["split into numbered files"] = list(reports(tmp_path / "split").values())
    kinds["split and gzipped"] = list(reports(tmp_path / "split-gz").values())
    kinds["single gzipped file"] = list(reports(tmp_path / "gz").values())
    kinds["no usage (summary only)"] = list(reports(tmp_path / "empty").values())
    kinds["usage only, every money cell 0"] = list(reports(tmp_path / "zero").values())
    write_dsr(pricing, parties, "cmo-gema", tmp_path / "levy")
    kinds["levies only (summary records with allocations)"] = list(
        reports(tmp_path / "levy").values())
    assert len(kinds["split into numbered files"][0]) > 2
    assert all(p.name.endswith(".tsv") for p in kinds["split into numbered files"][0])
    assert all(p.name.endswith(".gz") for p in kinds["split and gzipped"][0])
    zero_cells = [r for files in kinds["usage only, every money cell 0"] for f in files
                  for r in read_records(load(f)) if r[0] in ("SY02.02", "SU03.02", "LI01.02")]
    money = {"SY02.02": (11,), "SU03.02": (6,), "LI01.02": (8, 9)}  # NetRevenue, Allocated*
    assert zero_cells and {r[i] for r in zero_cells for i in money[r[0]]} == {"0.00"}
    for kind, groups in kinds.items():
        assert groups, kind
        for files in groups:
            check_report(files)
            validate(files)
