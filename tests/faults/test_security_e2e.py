"""Security against a running worker (issue 5, "Security"), on private services.

One worker runs with every secret the product knows:

* Kafka over SASL_SSL with SCRAM-SHA-512 (a private broker with a TLS listener whose
  certificate is signed by a throwaway CA; the test's own producer uses its PLAINTEXT
  listener), so the Faust consumer, the DLQ producer and the admin client all have to
  get the settings right;
* Redis over TLS (``rediss://``) with a password (a private redis-server);
* a bearer token for the query API.

It must count a workload exactly, its log (at debug level) must hold none of the three
secrets, its API must listen on 127.0.0.1 only, answer 401 without the token, 400 to
bad parameters and 404 to Faust's table/router/graph/stats views. Workers started with a
wrong Kafka or Redis password must fail without printing the password either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from fault_harness import PrivateKafka, Scenario, Sender, free_ports, log, port_free
from fault_workload import WorkloadBuilder, simple_bad

from streamer.config import load_settings
from streamer.verify.worker_process import WorkerProcess

KAFKA_PASSWORD = "kafka-S3cret-e2e-7c1f"
PLAIN_PASSWORD = "kafka-Pl41n-e2e-2b9d"
REDIS_PASSWORD = "redis-S3cret-e2e-5a0e"
WEB_TOKEN = "web-T0ken-e2e-9d3b"
SECRETS = (KAFKA_PASSWORD, PLAIN_PASSWORD, REDIS_PASSWORD, WEB_TOKEN)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make test certificates (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=streamer-e2e-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    keystore = folder / "server-keystore.pem"
    keystore.write_bytes((folder / "server.key").read_bytes()
                         + (folder / "server.pem").read_bytes())
    return {"ca": folder / "ca.pem", "cert": folder / "server.pem",
            "key": folder / "server.key", "keystore": keystore}


@pytest.fixture
def secure_kafka(tls: dict[str, Path]) -> Iterator[PrivateKafka]:
    broker = PrivateKafka("kafka-security", sasl_ssl_keystore=tls["keystore"],
                          plain_users={"plainuser": PLAIN_PASSWORD})
    broker.fresh()
    try:
        broker.run("up", timeout=180)
        broker.add_scram_user("SCRAM-SHA-512", "streamer", KAFKA_PASSWORD)
        yield broker
    finally:
        try:
            broker.run("down", timeout=120)
        finally:
            broker.fresh()


@pytest.fixture
def tls_redis(tls: dict[str, Path], tmp_path: Path) -> Iterator[str]:
    """redis-server with TLS only (no plain port) and a password; yields the URL."""
    (port,) = free_ports(16679, 1)
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tls["cert"]), "--tls-key-file", str(tls["key"]),
         "--tls-ca-cert-file", str(tls["ca"]), "--tls-auth-clients", "no",
         "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while port_free(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("TLS redis-server did not start")
            time.sleep(0.1)
        yield f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={tls['ca']}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _secure_env(kafka: PrivateKafka, tls: dict[str, Path], password: str) -> dict[str, str]:
    return {
        "STREAMER_KAFKA_BOOTSTRAP": kafka.sasl_ssl_bootstrap,
        "STREAMER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMER_KAFKA_SASL_USERNAME": "streamer",
        "STREAMER_KAFKA_SASL_PASSWORD": password,
        "STREAMER_KAFKA_SSL_CAFILE": str(tls["ca"]),
        "STREAMER_WEB_TOKEN": WEB_TOKEN,
    }


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                address, port_hex = fields[1].split(":")
                if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                    if len(address) == 8:
                        found.add(".".join(str(int(address[i:i + 2], 16))
                                           for i in range(6, -1, -2)))
                    else:
                        found.add(address)
    return found


async def _get(base: str, path: str, token: str | None = None,
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            base + path, headers=headers, params=params) as response:
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


def _admin(kafka: PrivateKafka, tls: dict[str, Path], password: str, mechanism: str,
           user: str) -> AIOKafkaAdminClient:
    settings = load_settings({**_secure_env(kafka, tls, password),
                              "STREAMER_KAFKA_SASL_MECHANISM": mechanism,
                              "STREAMER_KAFKA_SASL_USERNAME": user})
    return AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs(), request_timeout_ms=10_000)


async def test_secure_worker_end_to_end(secure_kafka: PrivateKafka, tls_redis: str,
                                        tls: dict[str, Path], tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    # The other mechanisms through the same settings path (what the DLQ producer, the
    # admin client and the SDK use), and a wrong password is refused by the broker.
    for mechanism, user, password in (("PLAIN", "plainuser", PLAIN_PASSWORD),
                                      ("SCRAM-SHA-512", "streamer", KAFKA_PASSWORD)):
        admin = _admin(secure_kafka, tls, password, mechanism, user)
        try:
            await asyncio.wait_for(admin.start(), 20)
            assert isinstance(await admin.list_topics(), list)
        finally:
            await admin.close()
    admin = _admin(secure_kafka, tls, "not-the-password", "SCRAM-SHA-512", "streamer")
    caplog.clear()
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(
                KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(admin.start(), 20)
    finally:
        await admin.close()
    # aiokafka gives up on the broker after logging why: the broker's answer, SASL
    # authentication failed (error 58), not a connection or TLS problem.
    refusals = [arg for record in caplog.records if record.name.startswith("aiokafka")
                for arg in (record.args if isinstance(record.args, tuple) else ())
                if isinstance(arg, BaseException)]
    assert refusals and all(isinstance(error, SaslAuthenticationFailed)
                            for error in refusals), refusals

    scenario = Scenario(7, "security: SASL_SSL/SCRAM Kafka, TLS+AUTH Redis, token",
                        secure_kafka.bootstrap, tls_redis, 2, tmp_path)
    await scenario.setup()
    sender = None
    try:
        workload = WorkloadBuilder(7007, 2, 20_000, tag=scenario.names.tag,
                                   now_ms=int(time.time() * 1000), n_tracks=300).build(
            default_bad=simple_bad)
        worker = scenario.worker("secure", loglevel="debug",
                                 **_secure_env(secure_kafka, tls, KAFKA_PASSWORD))
        worker.start()
        await worker.wait_healthy(90)
        sender = Sender(secure_kafka.bootstrap, scenario.names, workload)
        sender.start()
        await sender.wait(120)
        outcome = await scenario.verify(workload, drain_timeout=120)
        scenario.assert_exact(outcome)

        base = worker.base_url
        port = int(base.rsplit(":", 1)[1])
        assert _listening_addresses(port) == {"127.0.0.1"}

        queries = ["/v1/tracks/trk:1/usage", "/v1/holders/h-1/usage", "/v1/genres/lofi/usage",
                   "/v1/trending"]
        for path in queries:
            assert (await _get(base, path))[0] == 401, path
            assert (await _get(base, path, token="wrong"))[0] == 401, path
            assert (await _get(base, path, token=WEB_TOKEN + "x"))[0] == 401, path
            assert (await _get(base, path, token=WEB_TOKEN))[0] == 200, path

        bad_requests = [
            ("/v1/tracks/trk:1/usage", {"window": "2m"}),
            ("/v1/tracks/trk:1/usage", {"window": "x" * 5000}),
            ("/v1/tracks/trk:1/usage", {"at": "yesterday"}),
            ("/v1/tracks/trk:1/usage", {"at": "-1"}),
            ("/v1/tracks/trk:1/usage", {"at": "1e3"}),
            ("/v1/tracks/trk:1/usage", {"at": "9" * 25}),
            ("/v1/tracks/trk:1/usage", {"at": "1700000000000.5"}),
            ("/v1/trending", {"limit": "0"}),
            ("/v1/trending", {"limit": "101"}),
            ("/v1/trending", {"limit": "ten"}),
            ("/v1/tracks/bad%20track/usage", None),
            ("/v1/tracks/" + "a" * 129 + "/usage", None),
            ("/v1/holders/" + "h" * 129 + "/usage", None),
            ("/v1/holders/bad%01holder/usage", None),
            ("/v1/genres/LoFi/usage", None),
        ]
        for path, params in bad_requests:
            status, body = await _get(base, path, token=WEB_TOKEN, params=params)
            assert status == 400 and isinstance(body, dict) and body.get("error"), (
                path, params, status, body)
        # Beyond what the HTTP server reads at all: refused, never a 5xx.
        status, _ = await _get(base, "/v1/trending", token=WEB_TOKEN,
                               params={"window": "x" * 20_000})
        assert 400 <= status < 500
        for path in ("/table/", "/router/", "/graph/", "/stats/", "/table/count/",
                     "/router/count/key/"):
            assert (await _get(base, path, token=WEB_TOKEN))[0] == 404, path
        health_status = (await _get(base, "/v1/health"))[0]
        metrics_status = (await _get(base, "/metrics"))[0]
        scenario.notes.update({"health_without_token": health_status,
                               "metrics_without_token": metrics_status})
        log(f"security: without a token /v1/health answers {health_status}, "
            f"/metrics {metrics_status} (left open for probes and Prometheus)")

        worker.kill()
        text = worker.log_path.read_text(errors="replace")
        assert len(text) > 10_000, "the debug log is unexpectedly short"
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"secrets in the worker's debug log: {leaked}"
    finally:
        if sender is not None:
            await sender.close()
        await scenario.cleanup()

    # Wrong credentials: the worker fails (Kafka) or answers 503 (Redis), and says so
    # without printing the password it was given.
    # SASL PLAIN sends the password itself (aiokafka logs requests at DEBUG).
    wrong_kafka = WorkerProcess({**scenario.workers[0].env,
                                 "STREAMER_KAFKA_SASL_MECHANISM": "PLAIN",
                                 "STREAMER_KAFKA_SASL_USERNAME": "plainuser",
                                 "STREAMER_KAFKA_SASL_PASSWORD": "wrong-" + KAFKA_PASSWORD},
                                tmp_path / "wrong-kafka.log", loglevel="debug")
    wrong_redis = WorkerProcess({**scenario.workers[0].env,
                                 "STREAMER_WEB_PORT": str(free_ports(26990, 1)[0]),
                                 "STREAMER_REDIS_URL": tls_redis.replace(
                                     REDIS_PASSWORD, "wrong-" + REDIS_PASSWORD)},
                                tmp_path / "wrong-redis.log", loglevel="debug")
    with wrong_kafka, wrong_redis:
        deadline = time.monotonic() + 90
        while wrong_kafka.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert not wrong_kafka.alive and wrong_kafka.returncode != 0
        # A worker that cannot log in to Redis answers, and says it is not healthy.
        answers: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 60
        while len(answers) < 5 and time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientConnectionError, asyncio.TimeoutError):
                answers.append(await wrong_redis.get("/v1/health", timeout=2))
            await asyncio.sleep(0.5)
        assert wrong_redis.alive
        assert len(answers) == 5, f"the worker answered /v1/health {len(answers)} times in 60 s"
        assert all(status == 503 and body["status"] == "unavailable"
                   for status, body in answers), answers
    # aiokafka's debug line about the PLAIN login is there, its bytes are not.
    assert "<SASL bytes hidden>" in wrong_kafka.log_path.read_text(errors="replace")
    for process in (wrong_kafka, wrong_redis):
        text = process.log_path.read_text(errors="replace")
        assert "wrong-" + KAFKA_PASSWORD not in text and "wrong-" + REDIS_PASSWORD not in text
        assert KAFKA_PASSWORD not in text and REDIS_PASSWORD not in text and WEB_TOKEN not in text
