"""Checks of the deployment files: Prometheus config and alerts, Grafana dashboard, k8s.

* ``promtool`` (Debian's ``prometheus`` package, installed by deploy/local/install-deps.sh
  in CI) checks deploy/prometheus/ and runs the alert unit tests; a missing promtool
  fails these tests, it does not skip them.
* Every metric named in an alert or a dashboard panel must exist in streamer/metrics.py,
  and every label they group by must be one of its labels (or a target label).
* The k8s manifests and docker-compose are parsed and cross-checked: env var names against
  the settings declared in streamer/config/, probes against the worker's port and health
  path, scrape annotations, ConfigMap/Secret references.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamer.config import env_names, load_settings, unknown_variables
from streamer.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DASHBOARD = ROOT / "deploy" / "grafana" / "streamer-dashboard.json"
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"

# Labels Prometheus adds to every scraped series (target labels), besides the metric's own.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "env", "service"}
# Series Prometheus itself produces for each target.
SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
FORBIDDEN_LABELS = {"track", "track_id", "holder", "holder_id", "user", "user_id", "event",
                    "event_id", "video_id", "creator_id", "isrc", "iswc", "genre"}
ALLOWED_LABELS = {"topic", "partition", "reason", "operation", "result", "window"}


# ---------------------------------------------------------------- helpers


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package "
                    "(deploy/local/install-deps.sh prometheus)", pytrace=False)
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


def metric_catalog() -> dict[str, set[str]]:
    """Every series name a worker exposes -> the label names it can carry."""
    metrics = Metrics()
    catalog: dict[str, set[str]] = {}
    for wrapper in vars(metrics).values():
        labelnames = getattr(wrapper, "_labelnames", None)
        if labelnames is None or getattr(wrapper, "_labelvalues", ()):
            continue  # not a metric, or a labelled child of one listed elsewhere
        name, kind = wrapper._name, wrapper._type
        suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                    "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created")}[kind]
        for suffix in suffixes:
            labels = set(labelnames) | ({"le"} if suffix == "_bucket" else set())
            catalog[name + suffix] = labels
    # The collectors' series (process_*, python_*, streamer_build_info), as exposed.
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            catalog.setdefault(sample.name, set()).update(sample.labels)
    return catalog


# Exposed by /metrics but on no dashboard panel, on purpose (name -> why).
DELIBERATELY_NOT_ON_DASHBOARD = {
    "process_virtual_memory_bytes": "address space, not memory used: the dedupe tables "
                                    "reserve address space they never touch",
    "process_start_time_seconds": "restarts show as rebalances and in up",
    "process_open_fds": "a handful of sockets; no limit near",
    "process_max_fds": "a limit, not a signal",
    "python_info": "streamer_build_info carries the Python version",
    "python_gc_objects_collected_total": "the collector is tuned (STREAMER_GC_GEN0_THRESHOLD);"
                                         " its cost shows in CPU",
    "python_gc_objects_uncollectable_total": "always 0 in our code; a debugging aid",
    "python_gc_collections_total": "its cost shows in CPU",
    "streamer_catalog_restored_total": "rare (a Redis Cluster failover that lost catalog "
                                       "writes); each restore is a warning in the log",
}


_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                    "unless", "offset", "bool", "inf", "nan", "atan2"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, grouping/matching label names) used in a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)                     # ranges and subqueries
    grouping: set[str] = set()
    for match in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                             text):
        grouping.update(label.strip() for label in match.group(1).split(",") if label.strip())
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    matcher_labels = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", text)
    text = re.sub(r"\{[^}]*\}", " ", text)                      # label matchers
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names, grouping | set(matcher_labels)


def check_promql(expr: str, catalog: dict[str, set[str]], where: str) -> None:
    names, labels = promql_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - catalog.keys() - SYNTHETIC_SERIES
    assert not unknown, f"{where}: {sorted(unknown)} not defined in streamer/metrics.py: {expr}"
    known_labels = set().union(*(catalog.get(name, set()) for name in names)) | TARGET_LABELS
    assert labels <= known_labels, (
        f"{where}: labels {sorted(labels - known_labels)} are not labels of "
        f"{sorted(names)}: {expr}")


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(GRAFANA_DASHBOARD.read_text())


def dashboard_panels(panels: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"] if panels is None else panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values Prometheus can parse."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$__range", "1h").replace("$instance", ".*").replace("$job", ".+"))


def k8s_documents() -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s_object(kind: str, files: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    found = [doc for docs in (files or k8s_documents()).values() for doc in docs
             if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def settings_env_names() -> set[str]:
    """Every STREAMER_* variable declared in streamer/config/settings.py."""
    return set(env_names())


# ---------------------------------------------------------------- metrics


def test_metrics_follow_prometheus_naming_and_bounded_labels() -> None:
    metrics = Metrics()
    for wrapper in vars(metrics).values():
        if getattr(wrapper, "_labelnames", None) is None or getattr(wrapper, "_labelvalues", ()):
            continue
        name, kind = wrapper._name, wrapper._type
        assert name.startswith("streamer_"), name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        if kind == "counter":  # prometheus_client strips _total; it is added on exposition
            assert not name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), f"only counters end in _total: {name}"
        assert not re.search(r"_(milliseconds|ms|minutes|hours|kilobytes|megabytes)$", name), (
            f"{name}: use base units (_seconds, _bytes)")
        labels = set(wrapper._labelnames)
        assert not labels & FORBIDDEN_LABELS, f"{name}: unbounded label {labels & FORBIDDEN_LABELS}"
        assert labels <= ALLOWED_LABELS, f"{name}: unexpected label {labels - ALLOWED_LABELS}"
    for wrapper in vars(metrics).values():  # give labelled metrics a sample to expose
        labelnames = getattr(wrapper, "_labelnames", None)
        if labelnames and not getattr(wrapper, "_labelvalues", ()):
            wrapper.labels(*["x"] * len(labelnames))
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            assert not set(sample.labels) & FORBIDDEN_LABELS, sample


def test_issue_4_metrics_exist() -> None:
    catalog = metric_catalog()
    required = {
        "streamer_records_consumed_total": {"topic"},
        "streamer_events_consumed_total": {"topic"},
        "streamer_events_counted_total": set(),
        "streamer_events_rejected_total": {"reason"},   # late is reason="late"
        "streamer_duplicates_total": set(),
        "streamer_consumer_lag_records": {"topic", "partition"},
        "streamer_flush_duration_seconds_bucket": {"le"},
        "streamer_flush_pass_duration_seconds_bucket": {"le"},
        "streamer_flush_fields_bucket": {"le"},          # flush size
        "streamer_end_to_end_latency_seconds_bucket": {"le"},
        "streamer_redis_errors_total": {"operation"},    # every error is retried
        "streamer_catalog_lookups_total": {"result"},
        "streamer_pending_attribution_uses": set(),
        "streamer_partitions_assigned": set(),
        "streamer_rebalances_total": set(),
        "streamer_dlq_produce_errors_total": set(),
        "streamer_last_flush_timestamp_seconds": set(),
    }
    for name, labels in required.items():
        assert name in catalog, f"missing metric {name}"
        assert labels <= catalog[name], f"{name}: labels {catalog[name]}, want {labels}"


def test_promql_name_extraction() -> None:
    names, labels = promql_names(
        'histogram_quantile(0.99, sum by (le, job) (rate(streamer_x_bucket{instance=~"a|b"}'
        '[5m]))) > 60 and on(job) up{job="streamer"} == 0')
    assert names == {"streamer_x_bucket", "up"}
    assert labels == {"le", "job", "instance"}


# ---------------------------------------------------------------- Prometheus


def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_alert_unit_tests() -> None:
    result = run_promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_docker_compose_prometheus_config() -> None:
    result = run_promtool("check", "config", str(ROOT / "deploy" / "docker" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_prometheus_config(tmp_path: Path) -> None:
    """Debian builds Prometheus without Kubernetes service discovery, so promtool checks
    the k8s config with static targets standing in for kubernetes_sd_configs (the
    relabelling and everything else is checked as written)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "streamer"
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["streamer"]}}]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    name_rule = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
    assert name_rule["action"] == "keep"
    assert name_rule["regex"] == pod_labels["app.kubernetes.io/name"]
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["regex"] == "true"
    port_rule = relabel[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert re.sub(port_rule["regex"], port_rule["replacement"].replace("$", "\\"),
                  "10.0.0.7:8080;6066") == "10.0.0.7:6066"
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["10.0.0.7:6066"]}]
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_issue_4() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    lag = rules["StreamerConsumerLagGrowing"]
    assert "streamer_consumer_lag_records" in lag["expr"] and lag["for"] == "5m"
    assert "streamer_last_flush_timestamp_seconds" in rules["StreamerNoFlush"]["expr"]
    assert "> 60" in rules["StreamerNoFlush"]["expr"]
    assert "streamer_events_rejected_total" in rules["StreamerDeadLetterRateHigh"]["expr"]
    assert 'up{job=~"(.+/)?streamer"} == 0' in rules["StreamerWorkerDown"]["expr"]
    assert "streamer_redis_errors_total" in rules["StreamerRedisErrors"]["expr"]


def test_alerts_reference_only_defined_metrics() -> None:
    catalog = metric_catalog()
    for rule in alert_rules():
        check_promql(rule["expr"], catalog, f"alert {rule['alert']}")
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys()


def test_alert_runbook_anchors_exist() -> None:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+)$", doc, flags=re.M):
        anchors.add(re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-"))
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        # absolute once Prometheus fills in its external label (alerts.yml's header)
        assert base == "{{ $externalLabels.runbook_base }}", url
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in OPERATIONS.md"
    for link in re.findall(r"\]\(#([^)]+)\)", doc):
        assert link in anchors, f"OPERATIONS.md links to #{link}, which is no heading"


# ---------------------------------------------------------------- Grafana


def test_dashboard_is_importable_json() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    assert "id" not in board or board["id"] is None  # an id would clash on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_queries_use_only_defined_metrics() -> None:
    catalog = metric_catalog()
    count = 0
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            check_promql(grafana_to_promql(target["expr"]), catalog, f"panel {panel['title']!r}")
            count += 1
    assert count >= 20


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every panel query (as a recording rule)."""
    rules = [{"record": f"dashboard:query_{index}", "expr": grafana_to_promql(target["expr"])}
             for index, target in enumerate(
                 t for panel in dashboard_panels() for t in panel.get("targets", []))]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_metric_is_on_the_dashboard_or_deliberately_not() -> None:
    exprs = " ".join(target["expr"] for panel in dashboard_panels()
                     for target in panel.get("targets", []))
    used = set().union(*(promql_names(grafana_to_promql(expr))[0] for expr in [exprs]))
    families: dict[str, set[str]] = {}  # a histogram's series count as one metric
    for name in metric_catalog():
        base = re.sub(r"_(bucket|sum|count|created)$", "", name)
        if name.endswith("_created"):
            continue  # prometheus_client's creation times, never queried
        families.setdefault(base if base != name else name, set()).add(name)
    missing = {family for family, names in families.items()
               if not names & used and family not in DELIBERATELY_NOT_ON_DASHBOARD}
    assert not missing, f"on no dashboard panel and not in DELIBERATELY_NOT_ON_DASHBOARD: " \
                        f"{sorted(missing)}"
    stale = set(DELIBERATELY_NOT_ON_DASHBOARD) - set(families)
    assert not stale, f"listed as deliberately absent but not exported: {sorted(stale)}"
    on_board = set(DELIBERATELY_NOT_ON_DASHBOARD) & used
    assert not on_board, f"listed as absent but on the dashboard: {sorted(on_board)}"


def test_dashboard_and_alerts_work_with_either_job_label() -> None:
    """prometheus.yml's job "streamer" and a PodMonitor's "<namespace>/<name>"."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["job"]["query"]["query"] == "label_values(streamer_build_info, job)"
    assert "$job" in variables["instance"]["query"]["query"]
    text = json.dumps(board)
    assert 'job=\\"streamer\\"' not in text
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
    podmonitor = yaml.safe_load((PROMETHEUS_DIR / "podmonitor.yaml").read_text())
    operator_job = f"{podmonitor['metadata']['namespace']}/{podmonitor['metadata']['name']}"
    for rule in alert_rules():
        for matcher in re.findall(r'job\s*(=~|=|!=|!~)\s*"([^"]*)"', rule["expr"]):
            op, value = matcher
            assert op == "=~", (rule["alert"], rule["expr"])
            for job in ("streamer", operator_job):
                assert re.fullmatch(value, job), (rule["alert"], value, job)
            assert not re.fullmatch(value, "node-exporter"), rule["alert"]


def test_memory_and_the_missing_metrics_have_panels_and_memory_an_alert() -> None:
    titles = {target["expr"]: panel["title"] for panel in dashboard_panels()
              for target in panel.get("targets", [])}
    for metric in ("process_resident_memory_bytes", "streamer_delivery_stalled_seconds",
                   "streamer_flush_pass_duration_seconds_bucket",
                   "streamer_flush_interval_seconds", "streamer_build_info"):
        assert any(metric in expr for expr in titles), metric
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "process_resident_memory_bytes" in rules["StreamerMemoryHigh"]["expr"]


def test_dashboard_covers_issue_4() -> None:
    exprs = " ".join(target["expr"] for panel in dashboard_panels()
                     for target in panel.get("targets", []))
    assert "rate(streamer_events_counted_total" in exprs                     # throughput
    assert "streamer_consumer_lag_records" in exprs                          # lag
    for quantile in ("0.50", "0.95", "0.99"):                               # e2e percentiles
        assert (f"histogram_quantile({quantile}, sum by (le) "
                "(rate(streamer_end_to_end_latency_seconds_bucket") in exprs
    assert "sum by (reason) (rate(streamer_events_rejected_total" in exprs   # rejections
    assert "streamer_flush_duration_seconds_bucket" in exprs                 # flush duration
    assert "streamer_pending_attribution_uses" in exprs                      # pending


# ---------------------------------------------------------------- Kubernetes


def test_k8s_manifests_parse_and_kustomization_lists_them() -> None:
    files = k8s_documents()
    for name, docs in files.items():
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], name
    kustomization = files["kustomization.yaml"][0]
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), resource
    assert "secret.example.yaml" not in resources, "real secrets do not belong in git"
    kinds = {doc["kind"] for name in resources for doc in files[name]}
    assert {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"} <= kinds


def _container() -> dict[str, Any]:
    (container,) = k8s_object("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _web_port() -> int:
    return int(k8s_object("ConfigMap")["data"]["STREAMER_WEB_PORT"])


def test_k8s_env_names_exist_in_config() -> None:
    known = settings_env_names()
    config = k8s_object("ConfigMap")
    container = _container()
    names = set(config["data"]) | {entry["name"] for entry in container.get("env", [])}
    unknown = {name for name in names if name.startswith("STREAMER_")} - known
    assert not unknown, f"not declared in streamer/config/settings.py: {sorted(unknown)}"
    assert {"STREAMER_KAFKA_SASL_PASSWORD", "STREAMER_REDIS_URL"} <= names


def _streamer_words(path: Path) -> set[str]:
    return set(re.findall(r"\bSTREAMER_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))


@pytest.mark.parametrize("path", [K8S_DIR / "configmap.yaml", K8S_DIR / "deployment.yaml",
                                  COMPOSE_FILE], ids=lambda path: path.name)
def test_deploy_files_name_only_real_settings(path: Path) -> None:
    """Every STREAMER_* name, comments included, is a declared setting or a tool's variable
    (STREAMER_LOCAL_* for the local stack's ports): the worker would warn about any other."""
    words = _streamer_words(path)
    assert words, path
    warnings = [warning for word in sorted(words) for warning in unknown_variables({word: "x"})]
    assert not warnings, f"{path.name}: {warnings}"


def test_docker_compose_worker_settings_load() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    env = {name: str(value) for name, value in compose["services"]["worker"]["environment"].items()}
    assert set(env) <= settings_env_names(), sorted(set(env) - settings_env_names())
    settings = load_settings(env)
    assert (settings.web_host, settings.web_port) == ("0.0.0.0", 6066)
    published = compose["services"]["worker"]["ports"]
    assert any(port.endswith(f":{settings.web_port}") for port in published), published


def test_k8s_config_values_load() -> None:
    """The ConfigMap plus the example Secret is a configuration the worker accepts."""
    env = dict(k8s_object("ConfigMap")["data"])
    secret = k8s_object("Secret")["stringData"]
    for entry in _container()["env"]:
        ref = entry["valueFrom"]["secretKeyRef"]
        env[entry["name"]] = secret[ref["key"]]
    settings = load_settings(env)
    assert settings.web_host == "0.0.0.0", "probes and Prometheus come from outside the pod"
    assert settings.web_port == _web_port()
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password == secret["kafka-sasl-password"]


def test_k8s_secrets_come_from_the_secret() -> None:
    config = k8s_object("ConfigMap")["data"]
    for name in ("STREAMER_KAFKA_SASL_PASSWORD", "STREAMER_REDIS_URL", "STREAMER_WEB_TOKEN"):
        assert name not in config, f"{name} must come from a Secret, not the ConfigMap"
    container = _container()
    secret = k8s_object("Secret")
    refs = {entry["name"]: entry["valueFrom"]["secretKeyRef"] for entry in container["env"]
            if "secretKeyRef" in entry.get("valueFrom", {})}
    assert refs.keys() >= {"STREAMER_KAFKA_SASL_PASSWORD", "STREAMER_REDIS_URL"}
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    (env_from,) = container["envFrom"]
    assert env_from["configMapRef"]["name"] == k8s_object("ConfigMap")["metadata"]["name"]


def test_k8s_probes_use_liveness_and_readiness() -> None:
    """Liveness depends on nothing outside the process (a Redis outage restarted every
    pod after ~2 minutes); readiness only on Redis (a rebalance dropped every pod from
    the query Service). tests/integration/test_probes.py checks the endpoints."""
    container = _container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    paths = {"startupProbe": "/v1/live", "readinessProbe": "/v1/ready",
             "livenessProbe": "/v1/live"}
    for probe_name, path in paths.items():
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        port = probe["port"]
        assert (ports[port] if isinstance(port, str) else port) == _web_port(), probe_name
    liveness = container["livenessProbe"]
    # A stuck event loop is restarted after a minute, not on a single slow answer.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert container["readinessProbe"]["timeoutSeconds"] >= 1  # the ping waits 0.8 s


def test_compose_worker_healthcheck_asks_readiness() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    test = compose["services"]["worker"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "streamer", "query", "ready"], test


def test_k8s_scrape_annotations_and_resources() -> None:
    deployment = k8s_object("Deployment")
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _web_port()
    assert annotations["prometheus.io/path"] == "/metrics"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"][
        "labels"].items()
    resources = _container()["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    assert template["spec"]["terminationGracePeriodSeconds"] >= 30  # final flush on SIGTERM
    # Faust's working folder must be writable with a read-only root filesystem.
    data_dir = k8s_object("ConfigMap")["data"]["STREAMER_DATA_DIR"]
    mounts = {mount["mountPath"] for mount in _container()["volumeMounts"]}
    assert data_dir in mounts


def test_k8s_service_and_pdb_select_the_workers() -> None:
    labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = k8s_object("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ("http", _web_port())
    pdb = k8s_object("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is optional (CI does not install it); the YAML checks above "
                           "run without it")
def test_kustomize_builds() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S_DIR)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget",
                             "Service"]
