"""Liveness and readiness, apart from the detailed ``/v1/health``.

* ``GET /v1/live``: the process and its event loop respond (the answer is produced on
  the loop), and record delivery is not stalled (pipeline/watchdog.py: records wait
  in Kafka, none arrives; a restart is the cure). A liveness probe restarts the pod
  when this fails, so it asks nothing outside the process: a Redis outage must not
  restart every pod.
* ``GET /v1/ready``: this worker can serve queries, which need only Redis (every
  answer is read from Redis, any worker answers any query). A readiness probe takes
  the pod out of the query Service while it fails; a rebalance does not.
* ``GET /v1/health`` (views.py) stays the detailed consumption status: partitions,
  offsets, rebalancing, stalls; for people, dashboards and alerts, not for probes.

Both are unauthenticated like ``/v1/health``: they reveal nothing but up or down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

# A probe's own timeout in Kubernetes is 1 s by default; answer before it.
READY_PING_TIMEOUT_S = 0.8


async def redis_status(ping: Callable[[], Awaitable[Any]],
                       timeout_s: float = READY_PING_TIMEOUT_S) -> tuple[bool, dict[str, str]]:
    """Ready when Redis answers a PING within ``timeout_s``; else the reason why not."""
    try:
        await asyncio.wait_for(ping(), timeout_s)
    except TimeoutError:
        return False, {"status": "unavailable",
                       "reason": f"Redis did not answer a PING within {timeout_s:g} s"}
    except Exception as exc:
        return False, {"status": "unavailable",
                       "reason": f"Redis unreachable: {type(exc).__name__}: {exc}"[:300]}
    return True, {"status": "ok"}


def register_probes(app: faust.App, redis_ping: Callable[[], Awaitable[Any]],
                    stalled_for: Callable[[], float | None]) -> None:
    """``stalled_for``: seconds delivery has been stalled past its limit, else None."""

    @app.page("/v1/live")
    async def live(web: View, request: Request) -> Response:
        stalled = stalled_for()
        if stalled is not None:
            return web.json({"status": "unavailable",
                             "reason": f"delivery stalled: no record for {stalled:.0f} s "
                                       "while the input partitions lag"}, status=503)
        return web.json({"status": "ok"})

    @app.page("/v1/ready")
    async def ready(web: View, request: Request) -> Response:
        ok, body = await redis_status(redis_ping)
        return web.json(body, status=200 if ok else 503)
