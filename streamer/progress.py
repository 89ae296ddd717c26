"""Progress bars of ``streamer produce`` and ``streamer load``: total, rate and ETA.

On a terminal by default; off when stderr is a file or a pipe (a log would fill with
carriage returns), unless ``--progress`` asks for it.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(*, total: float | None, unit: str, desc: str,
                 enabled: bool | None = None) -> tqdm:  # type: ignore[type-arg]
    """A tqdm bar on stderr; ``enabled`` None means: if stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.3,
                desc=desc, file=sys.stderr, disable=not enabled, mininterval=0.5)
