"""``python -m streamer``: the same command as ``streamer``."""

import sys

from streamer.cli import main

sys.exit(main())
