"""``python -m streamer.config doc [--write [PATH]]`` or ``python -m streamer.config check``.

``doc`` prints docs/CONFIGURATION.md as the declarations make it (``--write`` saves it);
``check`` loads this environment's settings: exit code 2 and one line if any is bad.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamer.config.declare import ConfigError
from streamer.config.doc import DOC_PATH, render
from streamer.config.load import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.config", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doc", help="print (or --write) the configuration doc")
    doc.add_argument("--write", nargs="?", const=DOC_PATH, metavar="PATH",
                     help=f"write it to PATH (default {DOC_PATH})")
    sub.add_parser("check", help="check the STREAMER_* variables of this environment")
    args = parser.parse_args(argv)
    if args.command == "doc":
        if args.write:
            Path(args.write).write_text(render(), encoding="utf-8")
        else:
            sys.stdout.write(render())
        return 0
    logging.basicConfig(format="streamer: configuration warning: %(message)s")
    try:
        load_settings()
    except ConfigError as exc:
        print(f"streamer: configuration error: {exc}", file=sys.stderr)
        return 2
    print("streamer: configuration ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
