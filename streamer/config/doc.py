"""docs/CONFIGURATION.md, written from the declarations in settings.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from streamer.config.declare import Setting, declaration
from streamer.config.load import TOOL_PREFIXES, group_of
from streamer.config.settings import Settings

DOC_PATH = "docs/CONFIGURATION.md"
COMMAND = "python -m streamer.config doc --write"

_INTRO = f"""\
# Configuration

<!-- Generated from streamer/config/settings.py by `{COMMAND}`; do not edit by hand.
     tests/unit/test_config_doc.py fails when this file is stale. -->

The worker reads these `STREAMER_*` environment variables once, at start. An empty
variable counts as unset. `python -m streamer.config check` checks the current
environment without starting anything.

- **Every bad variable at once.** The worker (and `streamer` CLI) refuses to start on
  any variable that breaks its rule, listing each by name with the rule and the value
  given (secrets' values are never shown): one line on standard error, exit code 2.
- **Typos are warned about.** A `STREAMER_*` variable that is no setting is ignored
  with a warning naming the closest setting (`STREAMER_KAFKA_BOOTSTRAP_SERVERS is not a
  streamer setting and is ignored; did you mean STREAMER_KAFKA_BOOTSTRAP?`).
  Variables read by tools rather than the worker are not warned about; they start with
  {", ".join(f"`{prefix}`" for prefix in TOOL_PREFIXES)}
  (the local stack's scripts, the test suite, the benchmarks, the image build's facts).
- **Adding a setting**: declare a field with `setting(...)` in
  `streamer/config/settings.py` (variable, default, kind with its bounds, one-line doc),
  then run `{COMMAND}`.

"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(declared: Setting[Any], default: Any) -> str:
    if declared.shown_default is not None:
        return declared.shown_default
    if default is None:
        return "unset"
    return f"`{declared.kind.show(default)}`" if not declared.secret else "(secret)"


def _rows(cls: type[Any], instance: Any) -> list[str]:
    rows = []
    for dataclass_field in dataclasses.fields(cls):
        declared = declaration(dataclass_field)
        value = getattr(instance, dataclass_field.name)
        if declared is None:
            if group_of(dataclass_field) is not None:
                rows += _rows(type(value), value)
            continue
        secret = " Secret: never logged." if declared.secret else ""
        rows.append(f"| `{declared.env}` | {_cell(_default(declared, value))} | "
                    f"{_cell(declared.kind.accepts())} | {_cell(declared.doc + secret)} |")
    return rows


def render() -> str:
    """The whole of docs/CONFIGURATION.md."""
    table = ["| Variable | Default | Accepted values | What it does |",
             "| --- | --- | --- | --- |", *_rows(Settings, Settings())]
    return _INTRO + "\n".join(table) + "\n"
