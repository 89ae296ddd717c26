"""The party registry (TOML): who the holders in the ledger are, and who sends reports.

``[sender]`` names the platform as DSR sender (DPID, name, service description,
commercial model); each ``[[party]]`` maps a ``holder_id`` of the ledger to a display name,
a DDEX party id (DPID) and whether, and for which territories, it receives DSR files.
Holders the ledger names but the registry does not are reported by every run (never
dropped); ``_unclaimed`` and ``_unattributed`` are the ledger's own residual holders.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DPID = re.compile(r"PADPIDA[A-Za-z0-9]+")
_TERRITORY = re.compile(r"[A-Z]{2}")
_SERVICE = re.compile(r"[A-Za-z0-9-]{1,64}")
RESIDUAL_HOLDERS = ("_unattributed", "_unclaimed")
COMMERCIAL_MODELS = ("AdvertisementSupportedModel", "SubscriptionModel",
                     "FreeOfChargeModel", "RightsClaimModel")
RIGHTS_TYPES = ("MakeAvailableRight", "MechanicalRight", "PerformingRight",
                "ReproductionRight", "SynchronizationRight")
_SENDER_KEYS = {"dpid", "name", "service", "commercial_model", "rights_types"}
_PARTY_KEYS = {"holder_id", "name", "dpid", "dsr", "dsr_territories"}


class PartiesError(ValueError):
    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems[:5])
                         + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))


@dataclass(frozen=True, slots=True)
class Party:
    holder_id: str
    name: str
    dpid: str | None
    dsr: bool
    dsr_territories: tuple[str, ...] | None
    """None: every territory with usage or a levy share."""

    def receives_dsr(self, territory: str) -> bool:
        return self.dsr and (self.dsr_territories is None or territory in self.dsr_territories)


@dataclass(frozen=True, slots=True)
class Sender:
    dpid: str
    name: str
    service: str
    commercial_model: str
    rights_types: tuple[tuple[str, str], ...]
    """right -> DSR RightsType (master -> MakeAvailableRight, publishing ->
    MechanicalRight unless the registry says otherwise)."""

    def rights_type(self, right: str) -> str:
        return dict(self.rights_types)[right]


@dataclass(frozen=True, slots=True)
class Parties:
    path: str
    sha256: str
    sender: Sender
    parties: dict[str, Party]

    def get(self, holder_id: str) -> Party | None:
        return self.parties.get(holder_id)

    def display_name(self, holder_id: str) -> str:
        party = self.parties.get(holder_id)
        return party.name if party else holder_id

    def unknown(self, holder_ids: set[str] | list[str]) -> list[str]:
        return sorted(h for h in set(holder_ids)
                      if h not in self.parties and h not in RESIDUAL_HOLDERS)


def load_parties(path: str | Path) -> Parties:
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PartiesError(name, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PartiesError(name, [f"not valid TOML: {exc}"]) from None
    return parse_parties(document, name, hashlib.sha256(raw).hexdigest())


def parse_parties(document: dict[str, Any], name: str, sha256: str = "") -> Parties:
    problems: list[str] = []
    for key in sorted(set(document) - {"sender", "party"}):
        problems.append(f"unknown key {key!r} (known: party, sender)")
    sender = _sender(document.get("sender"), problems)
    parties: dict[str, Party] = {}
    seen: set[object] = set()
    items = document.get("party", [])
    if not isinstance(items, list):
        problems.append("party: write parties as [[party]] tables")
        items = []
    for number, item in enumerate(items, start=1):
        where = f"[[party]] #{number}"
        if not isinstance(item, dict):
            problems.append(f"{where}: not a table")
            continue
        holder = item.get("holder_id")
        if isinstance(holder, str) and holder in seen:
            problems.append(f"{where}: holder_id {holder!r} listed twice")
        seen.add(holder)
        party = _party(where, item, problems)
        if party is not None:
            parties[party.holder_id] = party
    if problems or sender is None:
        raise PartiesError(name, problems or ["[sender]: required"])
    return Parties(name, sha256, sender, parties)


def _sender(raw: Any, problems: list[str]) -> Sender | None:
    if not isinstance(raw, dict):
        problems.append("[sender]: required (dpid, name, service)")
        return None
    before = len(problems)
    for key in sorted(set(raw) - _SENDER_KEYS):
        problems.append(f"[sender]: unknown key {key!r}")
    dpid, name, service = raw.get("dpid"), raw.get("name"), raw.get("service")
    if not isinstance(dpid, str) or not DPID.fullmatch(dpid):
        problems.append(f"[sender]: dpid {dpid!r} is not a DDEX party id (PADPIDA...)")
    if not isinstance(name, str) or not name.strip():
        problems.append("[sender]: name required")
    if not isinstance(service, str) or not _SERVICE.fullmatch(service):
        problems.append(f"[sender]: service {service!r} must be letters, digits and '-' "
                        "(it is part of DSR file names: no '_' or spaces)")
    model = raw.get("commercial_model", "AdvertisementSupportedModel")
    if model not in COMMERCIAL_MODELS:
        problems.append(f"[sender]: commercial_model {model!r} is not one of "
                        f"{', '.join(COMMERCIAL_MODELS)}")
    types = {"master": "MakeAvailableRight", "publishing": "MechanicalRight"}
    given = raw.get("rights_types", {})
    if not isinstance(given, dict):
        problems.append("[sender]: rights_types must be a table right = \"RightsType\"")
        given = {}
    for right, value in given.items():
        if right not in types or value not in RIGHTS_TYPES:
            problems.append(f"[sender]: rights_types.{right} = {value!r}: a right (master, "
                            f"publishing) mapped to one of {', '.join(RIGHTS_TYPES)}")
        else:
            types[right] = value
    if len(problems) > before:
        return None
    return Sender(str(dpid), str(name), str(service), str(model),
                  tuple(sorted(types.items())))


def _party(where: str, item: dict[str, Any], problems: list[str]) -> Party | None:
    before = len(problems)
    for key in sorted(set(item) - _PARTY_KEYS):
        problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_PARTY_KEYS))})")
    holder = item.get("holder_id")
    if not isinstance(holder, str) or not holder or len(holder) > 128 or any(
            ord(c) < 32 for c in holder):
        problems.append(f"{where}: holder_id {holder!r} is not a holder id")
    elif holder in RESIDUAL_HOLDERS:
        problems.append(f"{where}: {holder} is the ledger's residual holder, not a party")
    name = item.get("name", holder)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name must be a non-empty string")
    dpid = item.get("dpid")
    if dpid is not None and (not isinstance(dpid, str) or not DPID.fullmatch(dpid)):
        problems.append(f"{where}: dpid {dpid!r} is not a DDEX party id (PADPIDA...)")
    dsr = item.get("dsr", False)
    if not isinstance(dsr, bool):
        problems.append(f"{where}: dsr must be true or false")
    if dsr is True and dpid is None:
        problems.append(f"{where}: dsr = true needs a dpid (DSR files are addressed to it)")
    territories = item.get("dsr_territories")
    if territories is not None and (
            not isinstance(territories, list) or not territories
            or not all(isinstance(t, str) and _TERRITORY.fullmatch(t) for t in territories)):
        problems.append(f"{where}: dsr_territories must be a list of ISO 3166-1 alpha-2 codes")
    if len(problems) > before:
        return None
    return Party(str(holder), str(name), dpid, bool(dsr),
                 tuple(sorted(set(territories))) if territories else None)
