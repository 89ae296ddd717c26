"""Security properties that need no running service (issue 5, "Security").

* Kafka SASL (PLAIN, SCRAM-SHA-256/512) and SSL settings reach both Kafka clients the
  worker runs: aiokafka (DLQ producer, admin, producer SDK) through
  ``KafkaSettings.aiokafka_kwargs`` and Faust through ``broker_credentials``;
  incomplete SASL settings are a ConfigError naming the variable.
* Redis AUTH and TLS come from the URL (``redis://user:pass@``, ``rediss://``).
* Secrets (Kafka password, Redis URL, web token) never appear in a settings repr.
* The query API binds to 127.0.0.1 by default; Faust's table, router, graph and stats
  views are off; input topics are read as raw bytes (no Faust codec).
* No pickle, marshal, eval, exec or yaml.load anywhere in the package.
* The record size limit is checked before the JSON parser runs, the batch limit before
  any event of the batch is validated.

The same properties against a running worker (real SASL_SSL Kafka, TLS Redis with a
password, HTTP checks, logs without secrets) are in tests/faults/test_security_e2e.py.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import types
from pathlib import Path

import orjson
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from redis.asyncio import SSLConnection
from redis.asyncio.cluster import RedisCluster

import streamer.events.decoding as decoding_module
import streamer.pipeline.processor as processor_module
from streamer.config import ConfigError, KafkaSettings, Settings, load_settings
from streamer.metrics import Metrics
from streamer.pipeline.app import _broker_credentials, create_app
from streamer.pipeline.processor import RecordProcessor
from streamer.state.catalog import CatalogCache
from streamer.state.partition import PartitionState
from streamer.state.store import connect

PACKAGE = Path(__file__).resolve().parents[2] / "streamer"
KAFKA_PASSWORD = "kafka-Pa55word-0123"
REDIS_PASSWORD = "redis-Pa55word-4567"
WEB_TOKEN = "web-T0ken-89abcdef"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA and a certificate/key signed by it (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make test certificates (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=streamer-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=streamer-client")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")
    return {"ca": str(folder / "ca.pem"), "cert": str(folder / "client.pem"),
            "key": str(folder / "client.key")}


def _kafka_env(protocol: str, mechanism: str | None = None, **extra: str) -> dict[str, str]:
    env = {"STREAMER_KAFKA_BOOTSTRAP": "broker-1:9093,broker-2:9093",
           "STREAMER_KAFKA_SECURITY_PROTOCOL": protocol}
    if mechanism:
        env |= {"STREAMER_KAFKA_SASL_MECHANISM": mechanism,
                "STREAMER_KAFKA_SASL_USERNAME": "streamer",
                "STREAMER_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD}
    return env | extra


# ----------------------------------------------------------------------- Kafka


def test_plaintext_has_no_sasl_or_tls() -> None:
    kwargs = load_settings(_kafka_env("PLAINTEXT")).kafka.aiokafka_kwargs()
    assert kwargs == {"bootstrap_servers": "broker-1:9093,broker-2:9093",
                      "security_protocol": "PLAINTEXT"}
    assert _broker_credentials(load_settings(_kafka_env("PLAINTEXT"))) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "scram-sha-512"])
def test_sasl_plaintext_reaches_aiokafka_and_faust(mechanism: str) -> None:
    settings = load_settings(_kafka_env("SASL_PLAINTEXT", mechanism))
    kwargs = settings.kafka.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == mechanism.upper()
    assert kwargs["sasl_plain_username"] == "streamer"
    assert kwargs["sasl_plain_password"] == KAFKA_PASSWORD
    assert "ssl_context" not in kwargs
    # What Faust hands to its own aiokafka consumer and producer: the same settings.
    faust_auth = credentials_to_aiokafka_auth(_broker_credentials(settings))
    assert faust_auth["security_protocol"] == "SASL_PLAINTEXT"
    assert faust_auth["sasl_mechanism"] == mechanism.upper()
    assert faust_auth["sasl_plain_username"] == "streamer"
    assert faust_auth["sasl_plain_password"] == KAFKA_PASSWORD


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_reaches_aiokafka_and_faust(mechanism: str, tls_files: dict[str, str]) -> None:
    settings = load_settings(_kafka_env("SASL_SSL", mechanism,
                                        STREAMER_KAFKA_SSL_CAFILE=tls_files["ca"]))
    kwargs = settings.kafka.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(cert["subject"] == ((("commonName", "streamer-test-ca"),),)
               for cert in context.get_ca_certs())
    faust_auth = credentials_to_aiokafka_auth(_broker_credentials(settings))
    assert faust_auth["security_protocol"] == "SASL_SSL"
    assert faust_auth["sasl_mechanism"] == mechanism
    assert faust_auth["sasl_plain_password"] == KAFKA_PASSWORD
    assert isinstance(faust_auth["ssl_context"], ssl.SSLContext)
    assert faust_auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_ssl_with_client_certificate(tls_files: dict[str, str]) -> None:
    settings = load_settings(_kafka_env(
        "ssl", STREAMER_KAFKA_SSL_CAFILE=tls_files["ca"],
        STREAMER_KAFKA_SSL_CERTFILE=tls_files["cert"], STREAMER_KAFKA_SSL_KEYFILE=tls_files["key"]))
    assert settings.kafka.security_protocol == "SSL"
    kwargs = settings.kafka.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    faust_auth = credentials_to_aiokafka_auth(_broker_credentials(settings))
    assert faust_auth["security_protocol"] == "SSL"
    assert isinstance(faust_auth["ssl_context"], ssl.SSLContext)


def test_faust_app_gets_the_credentials() -> None:
    settings = load_settings(_kafka_env("SASL_PLAINTEXT", "SCRAM-SHA-256",
                                        STREAMER_APP_ID="security-unit-app"))
    app = create_app(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_password"] == KAFKA_PASSWORD
    assert [str(url) for url in app.conf.broker] == ["kafka://broker-1:9093",
                                                     "kafka://broker-2:9093"]


@pytest.mark.parametrize("env, variable", [
    (_kafka_env("SASL_SSL"), "STREAMER_KAFKA_SASL_MECHANISM"),
    (_kafka_env("SASL_PLAINTEXT", "GSSAPI"), "STREAMER_KAFKA_SASL_MECHANISM"),
    (_kafka_env("SASL_PLAINTEXT", "PLAIN", STREAMER_KAFKA_SASL_PASSWORD=""),
     "STREAMER_KAFKA_SASL_PASSWORD"),
    (_kafka_env("SASL_PLAINTEXT", "PLAIN", STREAMER_KAFKA_SASL_USERNAME=""),
     "STREAMER_KAFKA_SASL_USERNAME"),
    (_kafka_env("TLS"), "STREAMER_KAFKA_SECURITY_PROTOCOL"),
])
def test_incomplete_kafka_security_is_a_config_error(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert variable in str(info.value)
    assert KAFKA_PASSWORD not in str(info.value)


# ----------------------------------------------------------------------- Redis


def test_redis_auth_from_url() -> None:
    client = connect(f"redis://streamer:{REDIS_PASSWORD}@redis.internal:6380/3")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("streamer", REDIS_PASSWORD)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.internal", 6380, 3)
    assert client.connection_pool.connection_class is not SSLConnection
    assert REDIS_PASSWORD not in repr(client) and REDIS_PASSWORD not in repr(client.connection_pool)


def test_redis_tls_from_url(tls_files: dict[str, str]) -> None:
    client = connect(f"rediss://:{REDIS_PASSWORD}@redis.internal:6380/0"
                     f"?ssl_ca_certs={tls_files['ca']}")
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["password"] == REDIS_PASSWORD
    assert pool.connection_kwargs["ssl_ca_certs"] == tls_files["ca"]
    # Certificates are verified unless the URL says otherwise.
    connection = pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_REQUIRED
    assert REDIS_PASSWORD not in repr(client) and REDIS_PASSWORD not in repr(connection)


def test_redis_cluster_tls_from_url() -> None:
    client = connect(f"rediss+cluster://:{REDIS_PASSWORD}@redis-0.internal:6380/0")
    assert isinstance(client, RedisCluster)
    node_kwargs = client.nodes_manager.connection_kwargs
    assert node_kwargs.get("connection_class") is SSLConnection or node_kwargs.get("ssl")
    assert node_kwargs["password"] == REDIS_PASSWORD


# ----------------------------------------------------------------------- secrets in reprs


def test_settings_repr_hides_secrets() -> None:
    settings = load_settings(_kafka_env(
        "SASL_SSL", "SCRAM-SHA-512",
        STREAMER_REDIS_URL=f"rediss://streamer:{REDIS_PASSWORD}@redis.internal:6380/0",
        STREAMER_WEB_TOKEN=WEB_TOKEN))
    for text in (repr(settings), str(settings), repr(settings.kafka), str(settings.kafka)):
        assert KAFKA_PASSWORD not in text
        assert REDIS_PASSWORD not in text
        assert "redis.internal" not in text  # the whole URL stays out, not just the password
        assert WEB_TOKEN not in text
    assert "broker-1:9093" in repr(settings)  # the rest is still there to debug with
    assert KafkaSettings(sasl_password=KAFKA_PASSWORD).sasl_password == KAFKA_PASSWORD


# ----------------------------------------------------------------------- the query API


def test_query_api_binds_localhost_by_default() -> None:
    assert Settings().web_host == "127.0.0.1"
    assert load_settings({}).web_host == "127.0.0.1"
    assert load_settings({}).web_token is None


def test_faust_views_off_and_inputs_raw() -> None:
    app = create_app(load_settings({"STREAMER_APP_ID": "security-unit-views"}))
    conf = app.conf
    assert conf.web_bind == "127.0.0.1"
    assert not conf.web_router_enabled and not conf.web_tables_enabled
    assert not conf.web_graph_enabled and not conf.web_stats_enabled
    assert not conf.web_metrics_enabled  # our /metrics replaces Faust's
    agents = list(app.agents.values())
    assert agents
    for agent in agents:
        channel = agent.channel
        # Raw bytes: no Faust codec (json, pickle, ...) ever runs on input.
        assert channel.key_serializer == "raw" and channel.value_serializer == "raw"


# ----------------------------------------------------------------------- no code from data

_DANGEROUS = re.compile(
    r"\bimport\s+(pickle|cPickle|dill|marshal|shelve|jsonpickle)\b"
    r"|\bfrom\s+(pickle|cPickle|dill|marshal|shelve|jsonpickle)\b"
    r"|\b(pickle|marshal|dill)\.loads?\("
    r"|(?<![\w.])(eval|exec|__import__)\("
    r"|(?<![\w.])compile\("
    r"|\byaml\.(unsafe_)?load(_all)?\("
    r"|\bshell\s*=\s*True")


def test_no_pickle_eval_exec_or_yaml_load_in_the_package() -> None:
    hits = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if _DANGEROUS.search(code):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not hits, "unsafe deserialisation or dynamic code:\n" + "\n".join(hits)


# ----------------------------------------------------------------------- size limits


def _processor() -> tuple[RecordProcessor, PartitionState, Settings]:
    settings = Settings()
    processor = RecordProcessor(settings, CatalogCache(100), Metrics())
    state = PartitionState(0, "owner", 0, settings.dedupe_horizon_ms)
    return processor, state, settings


def _use(i: int) -> dict[str, object]:
    return {"event_id": f"e{i}", "track_id": "t1", "occurred_at": 1_700_000_000_000,
            "user_id": "u", "use": "play", "country": "DE"}


def test_record_size_limit_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    processor, state, settings = _processor()
    parsed: list[int] = []
    fast = processor_module.decode_uses

    def counting_loads(value: bytes) -> object:
        parsed.append(len(value))
        return orjson.loads(value)

    def counting_decode(value: bytes) -> object:
        parsed.append(len(value))
        return fast(value)

    monkeypatch.setattr(decoding_module, "orjson", types.SimpleNamespace(
        loads=counting_loads, dumps=orjson.dumps, JSONDecodeError=orjson.JSONDecodeError))
    monkeypatch.setattr(processor_module, "decode_uses", counting_decode)
    body = b",".join(orjson.dumps(_use(i)) for i in range(20_000))
    value = b"[" + body + b"]"
    assert len(value) > settings.max_record_bytes
    processor.handle_uses(state, 0, value, 1_700_000_000_000)
    assert parsed == []
    assert [r.code for r in state.rejections] == ["record_too_large"]
    assert state.rejections[0].value == value  # the original bytes go to the DLQ
    # At the limit it is parsed (and counted).
    processor.handle_uses(state, 1, orjson.dumps(_use(1)), 1_700_000_000_000)
    assert len(parsed) == 1
    assert state.unflushed_events == 1


def test_batch_size_limit_before_validating_events(monkeypatch: pytest.MonkeyPatch) -> None:
    processor, state, settings = _processor()
    validated: list[object] = []
    real = decoding_module.sound_used_of

    def counting_parse(event: object) -> object:
        validated.append(event)
        return real(event)

    monkeypatch.setattr(decoding_module, "sound_used_of", counting_parse)
    value = b"[" + b",".join([b"{}"] * (settings.max_batch_events + 1)) + b"]"
    assert len(value) < settings.max_record_bytes
    processor.handle_uses(state, 0, value, 1_700_000_000_000)
    assert validated == []
    assert [r.code for r in state.rejections] == ["batch_too_large"]
    assert state.unflushed_events == 0


def test_sasl_plain_password_not_in_aiokafka_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    """aiokafka logs each request at DEBUG; SASL PLAIN's carries the password."""
    import logging

    from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

    import streamer.pipeline.app  # noqa: F401  (installs the filter)

    request = SaslAuthenticateRequest_v1(b"\x00streamer\x00" + KAFKA_PASSWORD.encode())
    assert KAFKA_PASSWORD in str(request)  # what aiokafka would print
    with caplog.at_level(logging.DEBUG, logger="aiokafka.conn"):
        logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "h", 9093, 3,
                                                 request)
    assert caplog.records and KAFKA_PASSWORD not in caplog.text
    assert "Request to h:9093 3" in caplog.text
