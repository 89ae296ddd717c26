"""Start a child whose Ctrl-C can be tested, however the test run itself was started."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` of a child that gets SIGINT: give it the default disposition.

    A shell starts background jobs (``bash .ci/run &``, ``nohup``) with SIGINT ignored, and
    children inherit that; Python then installs no KeyboardInterrupt handler, so a test
    sending SIGINT would see no interrupt at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
