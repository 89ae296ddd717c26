#!/usr/bin/env python3
"""Readiness probe for the local Kafka broker (stdlib only, no venv needed).

Sends a real Kafka Metadata request (API key 3, version 4, supported by Kafka
2.x..4.x; 4.0 removed v0-v3) over plain TCP and succeeds only when the broker
answers with at least one live broker in the cluster metadata. A fenced or still
starting KRaft broker is not listed there, so an open port alone does not pass.

    kafka-ready.py [--bootstrap 127.0.0.1:9092] [--wait SECONDS] [--min-brokers N] [--quiet]

Exit code 0 when ready (prints cluster id and brokers unless --quiet), 1 when
not ready within --wait seconds (default 0: a single attempt). --min-brokers: ready
only once the metadata lists that many live brokers (a cluster, deploy/local/kafka-cluster.sh).
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

METADATA_API_KEY = 3
METADATA_VERSION = 4
CLIENT_ID = b"streamer-kafka-ready"


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        value = self.buf[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return value


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def metadata(host: str, port: int, timeout: float) -> tuple[str | None, list[tuple[int, str, int]]]:
    """Return (cluster_id, [(node_id, host, port), ...]) from one Metadata request."""
    correlation_id = 1
    header = struct.pack(
        ">hhih", METADATA_API_KEY, METADATA_VERSION, correlation_id, len(CLIENT_ID)
    )
    # topics: empty array (= no topic details), allow_auto_topic_creation: false
    body = struct.pack(">ib", 0, 0)
    request = header + CLIENT_ID + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != correlation_id:
        raise ValueError("correlation id mismatch")
    reader.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.take(">i")):
        node_id = reader.take(">i")
        broker_host = reader.string() or ""
        broker_port = reader.take(">i")
        reader.string()  # rack
        brokers.append((node_id, broker_host, broker_port))
    cluster_id = reader.string()
    return cluster_id, brokers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--wait", type=float, default=0.0, help="keep trying for this many seconds")
    parser.add_argument("--min-brokers", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    host, _, port = args.bootstrap.rpartition(":")
    deadline = time.monotonic() + args.wait
    last_error = "no attempt"
    while True:
        try:
            cluster_id, brokers = metadata(host or "127.0.0.1", int(port), timeout=3.0)
            if len(brokers) >= args.min_brokers:
                if not args.quiet:
                    listed = ", ".join(f"{n}@{h}:{p}" for n, h, p in brokers)
                    print(
                        f"kafka ready at {args.bootstrap}: cluster {cluster_id}, brokers {listed}"
                    )
                return 0
            last_error = f"metadata lists {len(brokers)} live brokers, not {args.min_brokers} yet"
        except (OSError, ValueError, struct.error) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            if not args.quiet:
                print(f"kafka not ready at {args.bootstrap}: {last_error}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
