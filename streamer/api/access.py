"""Who may read what: the admin token and tokens scoped to rights holders.

``STREAMER_WEB_TOKEN`` is the admin token (reads everything). ``STREAMER_WEB_TOKENS_FILE``
maps the SHA-256 (hex) of each further token to ``"admin"`` or a list of holder ids; a
holder token reads only the holder routes of its own holders (docs/OPERATIONS.md,
"Access per rights holder"). The file holds hashes, never tokens, so it can be kept in
configuration management; tokens are never logged. Every comparison is
``hmac.compare_digest`` over SHA-256 digests, and every entry is compared (no early
exit), so the time taken does not tell which entry, or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from streamer.config import ConfigError
from streamer.config.declare import Problem

ADMIN = "admin"
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Access:
    """What one token may read: everything (admin) or the named holders' routes."""

    admin: bool
    holders: frozenset[str] = frozenset()

    def may_read_holder(self, holder_id: str) -> bool:
        return self.admin or holder_id in self.holders


EVERYTHING = Access(admin=True)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    """The tokens a worker accepts; ``open`` when none is configured (no auth, as before)."""

    def __init__(self, admin_token: str | None, scoped: dict[bytes, Access]) -> None:
        self._entries = list(scoped.items())
        if admin_token is not None:
            self._entries.append((digest(admin_token), EVERYTHING))
        self.open = not self._entries

    def access(self, authorization: str) -> Access | None:
        """The access of ``Authorization: Bearer <token>``, None for no or a wrong token."""
        if self.open:
            return EVERYTHING
        scheme, _, token = authorization.partition(" ")
        sent = digest(token.strip() if scheme.lower() == "bearer" else "\0no bearer token")
        found: Access | None = None
        for hashed, access in self._entries:
            if hmac.compare_digest(sent, hashed):
                found = access
        return found


def load_tokens(path: str | None, admin_token: str | None) -> Tokens:
    """Read the token file (TOML, or JSON when it ends in ``.json``); a problem is a
    ``ConfigError`` naming the file and the entry (by its position)."""
    if path is None:
        return Tokens(admin_token, {})
    def problem(rule: str) -> ConfigError:
        return ConfigError([Problem("STREAMER_WEB_TOKENS_FILE", f"{path}: {rule}")])

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise problem(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        document = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise problem(f"not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}") \
            from None
    if not isinstance(document, dict):
        raise problem("expected a mapping of sha256 hex -> \"admin\" or a list of holder ids")
    scoped: dict[bytes, Access] = {}
    for number, (key, value) in enumerate(document.items(), 1):
        # By position, never by key: a key that is not a hash may be a pasted token.
        entry = f"entry #{number}:"
        if not isinstance(key, str) or not _HEX.fullmatch(key):
            raise problem(f"{entry} the key must be the SHA-256 of a token, 64 lowercase hex "
                          "digits (sha256sum prints it)")
        if value == ADMIN:
            scoped[bytes.fromhex(key)] = EVERYTHING
        elif (isinstance(value, list) and value
              and all(isinstance(h, str) and h for h in value)):
            scoped[bytes.fromhex(key)] = Access(admin=False, holders=frozenset(value))
        else:
            raise problem(f"{entry} the value must be \"admin\" or a non-empty list of "
                          "holder ids")
    return Tokens(admin_token, scoped)
