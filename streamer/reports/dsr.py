"""DDEX DSR flat files, UGC profile 1.2 (multi-record block variant), per recipient and
territory.

A report holds every track the recipient has a share in (any right, any catalog version)
with usage in the territory during the period:

* HEAD; SY02.02 summaries per commercial model x use type x content category (the
  track's ai_origin: ``human``, ``ai_assisted``, ``ai_generated``; DDEX has no AI field,
  the agreed ContentCategory carries it); then per track a block: AS02.02 (ids, title,
  artist, publishers), one SU03.02 per use and catalog version (usages = the ledger's
  track rows), each followed by LI01.02 lines for the recipient's share per right in that
  version (allocated usages = usages x share); an SU03 with no LI01 (a version in which
  the recipient held nothing) names its summary itself; FOOT.
* ``create`` is ``UserMakeAvailableUserProvided``, ``play`` is ``OnDemandStream``.
* A levy the recipient has a share of (``[[levy]]`` in the rate card) is one more SY02.02
  per levy and territory, after the usage summaries: no track lines (a levy is owed on
  the territory's uses of AI-origin tracks as a whole, not per recording), so the
  profile's summary-level allocation cells carry it: Usages = the uses it was charged on,
  NetRevenue = the levy, RightsController(PartyId) = the recipient, AllocatedUsages =
  uses x its share, AllocatedRevenue = AllocatedNetRevenue = its statement amount,
  ContentCategory ``levy_<ai_origin>``. A party paid only levies gets these reports too.
* Money cells carry the statement's amounts: SU03 NetRevenue = all holders' amounts for
  those uses, LI01 = the recipient's statement line, SY02 = the sum of its SU03s.
* A report whose blocks exceed ``max_file_bytes`` is split at block boundaries into
  numbered files, each holding blocks up to that size (a larger block gets a file of its
  own) plus HEAD, the same summaries and FOOT; files larger than
  ``gzip_over_bytes`` are gzipped (no timestamp in the gzip header).
* MessageId and creation time are derived from the inputs (or the time is passed in),
  so the same ledger versions, rate card and parties give byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streamer.events.shares import MICRO
from streamer.reports.money import format_micro, format_minor, format_percent_micro
from streamer.reports.parties import RESIDUAL_HOLDERS, Parties, Party
from streamer.reports.pricing import LevyLine, Pricing
from streamer.reports.source import ReportInputError

MESSAGE_VERSION = "dsrf/1.2/1.4.1/1.2"
PROFILE, PROFILE_VERSION = "UGCProfile", "1.2"
USE_TYPES = {"create": "UserMakeAvailableUserProvided", "play": "OnDemandStream"}
ANY_USE_TYPE = "Use"  # DDEX's generic UseType: a levy on every use of a territory
LEVY_CATEGORY_PREFIX = "levy_"
DEFAULT_MAX_FILE_BYTES = 500 * 1024 * 1024
DEFAULT_GZIP_OVER_BYTES = 10 * 1024 * 1024

FIELDS: dict[str, tuple[str, ...]] = {
    "HEAD": ("MessageVersion", "Profile", "ProfileVersion", "MessageId",
             "MessageCreatedDateTime", "FileNumber", "NumberOfFiles", "UsageStartDate",
             "UsageEndDate", "SenderPartyId", "SenderName", "ServiceDescription",
             "RecipientPartyId", "RecipientName", "RepresentedRepertoire"),
    "SY02.02": ("SummaryRecordId", "DistributionChannel", "DistributionChannelDPID",
                "CommercialModel", "UseType", "Territory", "ServiceDescription", "Usages",
                "Users", "CurrencyOfReporting", "NetRevenue", "RightsController",
                "RightsControllerPartyId", "AllocatedUsages", "AllocatedRevenue",
                "AllocatedNetRevenue", "RightsType", "ContentCategory",
                "CurrencyOfTransaction", "ExchangeRate", "RightsTypePercentage"),
    "AS02.02": ("BlockId", "ResourceReference", "DspResourceId", "ISRC", "Title",
                "SubTitle", "DisplayArtistName", "DisplayArtistPartyId", "Duration",
                "ResourceType", "ISWC", "ComposerAuthor", "ComposerAuthorPartyId",
                "Arranger", "ArrangerPartyId", "MusicPublisher", "MusicPublisherPartyId",
                "WorkContributor", "WorkContributorPartyId", "ProprietaryWorkId",
                "IsMasterRecording"),
    "SU03.02": ("BlockId", "SalesTransactionId", "SummaryRecordId", "DspResourceId",
                "Usages", "NetRevenue", "ValidityPeriodStart", "ValidityPeriodEnd",
                "ContentCategory", "IsRoyaltyBearing"),
    "LI01.02": ("BlockId", "SummaryRecordId", "RightsController", "RightsControllerPartyId",
                "RightsControllerWorkId", "RightSharePercentage", "RightsType",
                "AllocatedNetRevenue", "AllocatedAmount", "AllocatedUsages"),
    "FOOT": ("NumberOfLinesInFile", "NumberOfLinesInReport", "NumberOfSummaryRecords",
             "NumberOfBlocksInFile", "NumberOfBlocksInReport"),
}
"""Cells after RecordType, per record type, in order (the project's tests check counts)."""
HEADINGS = [("#" + "\t".join((kind, *names)) + "\n") for kind, names in FIELDS.items()]


def escape(value: str) -> str:
    """A cell value as the flat-file rules want it: backslash, TAB and pipe escaped with a
    backslash; line breaks (which no escape can carry) become spaces."""
    return (value.replace("\\", "\\\\").replace("\t", "\\\t").replace("|", "\\|")
            .replace("\r\n", " ").replace("\n", " ").replace("\r", " "))


def record(kind: str, *cells: str | Sequence[str] | None) -> str:
    """One line: RecordType then the cells (a sequence is a multi-value cell)."""
    if len(cells) != len(FIELDS[kind]):
        raise ValueError(f"{kind}: {len(cells)} cells, expected {len(FIELDS[kind])}")
    out = [kind]
    for cell in cells:
        if cell is None:
            out.append("")
        elif isinstance(cell, str):
            out.append(escape(cell))
        else:
            out.append("|".join(escape(value) for value in cell))
    return "\t".join(out) + "\n"


def content_category(ai_origin: str) -> str:
    return ai_origin


@dataclass(slots=True)
class _Summary:
    record_id: int
    use: str
    category: str
    usages: int = 0
    revenue: int = 0


@dataclass(slots=True)
class _Part:
    body: io.StringIO = field(default_factory=io.StringIO)
    lines: int = 0
    blocks: int = 0
    size: int = 0


@dataclass(slots=True)
class DsrReport:
    recipient: str
    territory: str
    files: dict[str, str] = field(default_factory=dict)
    """File name -> SHA-256 of the bytes written."""
    message_id: str = ""
    blocks: int = 0
    usages: int = 0


_ROWS = """
CREATE OR REPLACE TEMP TABLE dsr_rows AS
WITH mine AS (SELECT DISTINCT territory, track_id FROM priced WHERE holder_id = $holder),
     su AS (SELECT territory, track_id, use, catalog_version,
                   any_value(ai_origin) AS ai_origin, max(uses) AS uses,
                   sum(amount_minor)::HUGEINT AS revenue, min(currency) AS currency,
                   count(DISTINCT currency) AS currencies
            FROM priced SEMI JOIN mine USING (territory, track_id) GROUP BY ALL),
     li AS (SELECT territory, track_id, use, catalog_version, "right", share_micro,
                   weighted_micro, amount_minor FROM priced WHERE holder_id = $holder)
SELECT su.territory, su.track_id, su.use, su.catalog_version, su.ai_origin, su.uses,
       su.revenue, su.currency, su.currencies, li."right", li.share_micro,
       li.weighted_micro, li.amount_minor
FROM su LEFT JOIN li USING (territory, track_id, use, catalog_version)
"""


class DsrWriter:
    """Writes one recipient's reports for a priced period."""

    def __init__(self, pricing: Pricing, parties: Parties, recipient: str,
                 created: str | None = None, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 gzip_over_bytes: int = DEFAULT_GZIP_OVER_BYTES) -> None:
        party = parties.get(recipient)
        if party is None or not party.dsr or party.dpid is None:
            raise ReportInputError(f"--recipient: {recipient!r} is not a party that receives "
                                   "DSR files (dsr = true and a dpid in the parties file)")
        self.pricing = pricing
        self.parties = parties
        self.party: Party = party
        self.created = _created(created or pricing.snapshot.committed_at)
        self.max_file_bytes = max_file_bytes
        self.gzip_over_bytes = gzip_over_bytes
        columns = {row[0] for row in pricing.con.execute("DESCRIBE catalog").fetchall()}
        self.optional = [name for name in ("title", "isrc", "iswc", "duration_ms")
                         if name in columns]

    def territories(self, territory: str | None) -> list[str]:
        """The territories to report: the one asked for, else those listed for the
        recipient, else every territory where it has usage."""
        if territory is not None:
            if not self.party.receives_dsr(territory):
                raise ReportInputError(f"--territory: {self.party.holder_id!r} does not "
                                       f"receive DSR files for {territory}")
            return [territory]
        if self.party.dsr_territories is not None:
            return list(self.party.dsr_territories)
        with_usage = {row[0] for row in self.pricing.con.execute(
            "SELECT DISTINCT territory FROM priced WHERE holder_id = ?",
            [self.party.holder_id]).fetchall()}
        with_levy = {line.territory for line in self.pricing.levies_of(self.party.holder_id)}
        return sorted(with_usage | with_levy)

    def write(self, out_dir: str | Path, territory: str | None = None) -> list[DsrReport]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        territories = self.territories(territory)
        con = self.pricing.con
        con.execute(_ROWS, {"holder": self.party.holder_id})
        meta = self._metadata(self.party.holder_id)
        try:
            return [self._report(out, where, meta) for where in territories]
        finally:
            con.execute("DROP TABLE IF EXISTS dsr_rows")

    def _report(self, out: Path, territory: str,
                meta: dict[str, dict[str, Any]]) -> DsrReport:
        holder = self.party.holder_id
        period = self.pricing.snapshot.period
        currency = self.pricing.card.currency_of(period.text, territory)
        combos = self.pricing.con.execute(
            "SELECT DISTINCT use, ai_origin FROM dsr_rows WHERE territory = ? ORDER BY ALL",
            [territory]).fetchall()
        summaries = {(use, content_category(origin)): _Summary(number, use,
                                                                content_category(origin))
                     for number, (use, origin) in enumerate(combos, start=1)}
        parts = [_Part()]
        report = DsrReport(holder, territory)
        rows = self.pricing.con.execute(
            "SELECT * EXCLUDE (territory) FROM dsr_rows WHERE territory = ? "
            'ORDER BY track_id, use, catalog_version, "right"', [territory]).fetchall()
        block_id = 0
        track: str | None = None
        block: list[str] = []
        last_su: tuple[str, str, str] | None = None
        sales = 0

        def flush() -> None:
            if not block:
                return
            text = "".join(block)
            part = parts[-1]
            size = len(text.encode())
            if part.blocks and part.size + size > self.max_file_bytes:
                parts.append(_Part())
                part = parts[-1]
            part.body.write(text)
            part.lines += len(block)
            part.blocks += 1
            part.size += size
            block.clear()

        pending_su: list[Any] | None = None
        pending_li: list[str] = []

        def emit_su() -> None:
            nonlocal pending_su
            if pending_su is None:
                return
            cells, summary = pending_su
            if not pending_li:
                cells[2] = str(summary.record_id)  # SU03 names its summary itself
            block.append(record("SU03.02", *cells))
            block.extend(pending_li)
            pending_su = None
            pending_li.clear()

        for (track_id, use, version, origin, uses, revenue, row_currency, currencies, right,
             share, weighted, amount) in rows:
            if currencies != 1 or row_currency != currency:
                raise ReportInputError(f"{territory}: lines in more than one currency")
            if track_id != track:
                emit_su()
                flush()
                track = track_id
                block_id += 1
                block.append(self._as02(block_id, track_id, meta.get(track_id, {})))
            category = content_category(origin)
            summary = summaries[(use, category)]
            if (track_id, use, version) != last_su:
                emit_su()
                last_su = (track_id, use, version)
                sales += 1
                summary.usages += int(uses)
                summary.revenue += int(revenue)
                report.usages += int(uses)
                pending_su = [[str(block_id), f"T{sales}", None, track_id, str(int(uses)),
                               format_minor(int(revenue), currency),
                               period.first.isoformat(), period.last.isoformat(), category,
                               None], summary]
            if right is not None:
                pending_li.append(record(
                    "LI01.02", str(block_id), str(summary.record_id),
                    self.party.name, f"DPID::{self.party.dpid}", None,
                    format_percent_micro(int(share)), self.parties.sender.rights_type(right),
                    format_minor(int(amount), currency), format_minor(int(amount), currency),
                    format_micro(int(weighted))))
        emit_su()
        flush()
        report.blocks = block_id
        sender = self.parties.sender
        summary_lines = [record(
            "SY02.02", str(s.record_id), None, None, sender.commercial_model,
            USE_TYPES[s.use], territory, sender.service, str(s.usages), None, currency,
            format_minor(s.revenue, currency), None, None, None, None, None, None,
            s.category, None, None, None) for s in summaries.values()]
        levies = self.pricing.levies_of(holder, territory)
        summary_lines += [self._levy_summary(number, line, currency)
                          for number, line in enumerate(levies, start=len(summaries) + 1)]
        if not summary_lines:  # no usage: one summary with 0 usages says so
            summary_lines = [record(
                "SY02.02", "1", None, None, sender.commercial_model, USE_TYPES["play"],
                territory, sender.service, "0", None, currency, format_minor(0, currency),
                None, None, None, None, None, None, "human", None, None, None)]
        return self._assemble(out, report, parts, summary_lines)

    def _levy_summary(self, record_id: int, line: LevyLine, currency: str) -> str:
        """A levy's SY02.02 (module docstring): summary-level allocation, no usage lines."""
        if line.currency != currency:
            raise ReportInputError(f"{line.territory}: {line.levy_id} is in {line.currency}, "
                                   f"the territory's lines in {currency}")
        sender = self.parties.sender
        amount = format_minor(line.amount_minor, currency)
        return record(
            "SY02.02", str(record_id), None, None, sender.commercial_model,
            USE_TYPES[line.use] if line.use else ANY_USE_TYPE, line.territory, sender.service,
            str(line.uses), None, currency, format_minor(line.levy_minor, currency),
            self.party.name, f"DPID::{self.party.dpid}",
            format_micro(line.uses * int(line.share * MICRO)), amount, amount, None,
            LEVY_CATEGORY_PREFIX + line.ai_origin, None, None, None)

    def _assemble(self, out: Path, report: DsrReport, parts: list[_Part],
                  summary_lines: list[str]) -> DsrReport:
        sender = self.parties.sender
        snapshot = self.pricing.snapshot
        period = snapshot.period
        territory = report.territory
        versions = ",".join(f"{k}={v}" for k, v in sorted(snapshot.versions.items()))
        notes = [f"# streamer: built from ledger table versions {versions}; rate card sha256 "
                 f"{self.pricing.card.sha256}; parties sha256 {self.parties.sha256}\n"]
        if snapshot.provisional:
            days = ", ".join(day.isoformat() for day, _, _ in snapshot.not_closed)
            notes.append(f"# PROVISIONAL: days not closed by every partition: {days}\n")
        message_id = self._message_id(territory)
        report.message_id = message_id
        total_files = len(parts)
        fixed = 1 + len(notes) + len(HEADINGS) + len(summary_lines) + 1  # HEAD ... FOOT
        lines_in_report = sum(fixed + part.lines for part in parts)
        for number, part in enumerate(parts, start=1):
            body = part.body.getvalue()
            head = record("HEAD", MESSAGE_VERSION, PROFILE, PROFILE_VERSION, message_id,
                          self.created.strftime("%Y-%m-%dT%H:%M:%SZ"), str(number),
                          str(total_files), period.first.isoformat(), period.last.isoformat(),
                          sender.dpid, sender.name, sender.service, self.party.dpid,
                          self.party.name, None)
            foot = record("FOOT", str(fixed + part.lines), str(lines_in_report),
                          str(len(summary_lines)), str(part.blocks), str(report.blocks))
            data = "".join([head, *notes, *HEADINGS, *summary_lines, body, foot]).encode()
            name = (f"DSR_{self.party.dpid}_{sender.dpid}_{sender.service}_{period.text}_"
                    f"{territory}_{number}of{total_files}_"
                    f"{self.created.strftime('%Y%m%dT%H%M%S')}.tsv")
            if len(data) > self.gzip_over_bytes:
                name += ".gz"
                data = _gzip(data)
            (out / name).write_bytes(data)
            report.files[name] = hashlib.sha256(data).hexdigest()
        return report

    def _message_id(self, territory: str) -> str:
        """Derived from everything the report is built from: a different input (a
        corrected ledger, card or registry) gives a new id, a rebuild the same one."""
        snapshot = self.pricing.snapshot
        digest = hashlib.sha256(orjson.dumps({
            "sender": self.parties.sender.dpid, "recipient": self.party.dpid,
            "period": snapshot.period.text, "territory": territory,
            "ledger": snapshot.manifest(), "rate_card": self.pricing.card.sha256,
            "parties": self.parties.sha256, "created": self.created.isoformat(),
            "max_file_bytes": self.max_file_bytes,
        }, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return digest[:32]

    def _metadata(self, holder: str) -> dict[str, dict[str, Any]]:
        """Per track of the recipient's reports: artist, publishers (and title, ISRC,
        ISWC, duration when the ledger's catalog carries them). A name is the latest the
        period's catalog versions give (by day, then version: deterministic), skipping
        versions without one."""
        extra = "".join(f", {_latest(name)}" for name in self.optional)
        rows = self.pricing.con.execute(f"""
            SELECT track_id, {_latest("artist")}{extra},
                   list(DISTINCT holder_id ORDER BY holder_id)
                     FILTER (WHERE "right" = 'publishing') AS publishers
            FROM catalog WHERE track_id IN (SELECT DISTINCT track_id FROM dsr_rows)
            GROUP BY track_id""").fetchall()
        names = ["track_id", "artist", *self.optional, "publishers"]
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}

    def _as02(self, block_id: int, track_id: str, meta: dict[str, Any]) -> str:
        publishers = [self.parties.display_name(h) for h in meta.get("publishers") or []
                      if h not in RESIDUAL_HOLDERS]
        duration = meta.get("duration_ms")
        return record(
            "AS02.02", str(block_id), "R1", track_id,
            [meta["isrc"]] if meta.get("isrc") else None, meta.get("title") or track_id, None,
            meta.get("artist") or "Unknown Artist", None,
            f"PT{int(duration) // 1000}S" if duration is not None else None,
            "SoundRecording", meta.get("iswc"), None, None, None, None,
            sorted(publishers) or None, None, None, None, f"streamer::{track_id}", None)


def _latest(column: str) -> str:
    """The catalog's latest non-null ``column`` of a track (by day, then version)."""
    return (f"arg_max({column}, day::VARCHAR || catalog_version) "
            f"FILTER (WHERE {column} IS NOT NULL) AS {column}")


def _created(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportInputError(f"--created: {text!r} is not an ISO 8601 date and time "
                               "such as 2026-12-01T00:00:00Z") from None
    if value.utcoffset() is None or value.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
        raise ReportInputError(f"--created: {text!r} must be in UTC (end with Z)")
    return value


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


def write_dsr(pricing: Pricing, parties: Parties, recipient: str, out_dir: str | Path,
              territory: str | None = None, created: str | None = None,
              max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
              gzip_over_bytes: int = DEFAULT_GZIP_OVER_BYTES) -> list[DsrReport]:
    return DsrWriter(pricing, parties, recipient, created, max_file_bytes,
                     gzip_over_bytes).write(out_dir, territory)


def read_records(data: bytes | str) -> Iterable[list[str]]:
    """The records of a file as lists of unescaped cells (comments skipped): what the
    tests read back; multi-value cells stay joined with unescaped '|' kept as ``\\|``."""
    text = data.decode() if isinstance(data, bytes) else data
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        cells, current, index = [], [], 0
        while index < len(line):
            char = line[index]
            if char == "\\" and index + 1 < len(line):
                following = line[index + 1]
                current.append(following if following in "\\\t" else "\\" + following)
                index += 2
                continue
            if char == "\t":
                cells.append("".join(current))
                current = []
            else:
                current.append(char)
            index += 1
        cells.append("".join(current))
        yield cells


__all__ = ["FIELDS", "DsrReport", "DsrWriter", "escape", "read_records", "record",
           "write_dsr"]
