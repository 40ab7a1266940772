"""alert-receiver's self-monitoring: its alert rules, their promtool tests, the Grafana dashboard.

The metric names come from a live registry (receiver.metrics.Metrics), so renaming a metric in
receiver/metrics.py without updating the dashboard and the rules fails here. promtool and amtool run
for real; a missing tool skips, unless RECEIVER_REQUIRE_TOOLS=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.metrics import Metrics
from tests.kit._tools import (
    ALERTMANAGER_DIR,
    REPO,
    RULES_DIR,
    VALUES_FILE,
    load_yaml,
    require_tool,
    run,
    write_yaml,
)

DASHBOARDS_DIR = ALERTMANAGER_DIR / "dashboards"
DASHBOARD_FILE = DASHBOARDS_DIR / "alert-receiver.json"
RECEIVER_RULES_FILE = RULES_DIR / "receiver-rules.yaml"
RECEIVER_RULE_TESTS = RULES_DIR / "tests" / "receiver" / "receiver-rules-test.yaml"
ROUTES_FILE = DASHBOARDS_DIR / "routes-self-monitoring.yaml"
SERVICE_FILE = REPO / "deploy" / "kubernetes" / "service.yaml"

# The job label Prometheus gives the receiver's series: the Service's name (servicemonitor.yaml).
RECEIVER_JOB = "alert-receiver"
# Series Prometheus writes itself, which the rules and the dashboard may use besides the receiver's.
PROMETHEUS_SERIES = {"up", "ALERTS"}
# Grafana's variables, replaced by example values to hand panel queries to promtool.
GRAFANA_VARIABLES = {
    "job": RECEIVER_JOB,
    "namespace": ".*",
    "__rate_interval": "1m",
    "__range": "6h",
    "__interval": "30s",
}

# --- PromQL: the metric names an expression reads --------------------------------------------------

_NOT_METRICS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (not functions, keywords, labels or durations)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):  # not the `m` of `5m`, the `e3` of `1e3`
        word = match.group()
        if word.lower() in _NOT_METRICS or re.match(r"\s*\(", text[match.end() :]):  # a function call
            continue
        names.add(word)
    return names


def selectors(expr: str, names: set[str]) -> list[tuple[str, str]]:
    """(metric, label matchers text) of every selector of one of `names` in an expression."""
    found = []
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?", expr):
        if match.group(1) in names:
            found.append((match.group(1), match.group(2) or ""))
    return found


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(foo_bucket{job="a", x=~"b|c"}[5m]))', {"foo_bucket"}),
        ('up{job="x"} == 0 or absent(up{job="x"})', {"up"}),
        ("a / on (x) group_left (y) b offset 1h > 0.5e3", {"a", "b"}),
        ("histogram_quantile(0.99, sum(rate(x_bucket[$__rate_interval])) by (le))", {"x_bucket"}),
        ('ALERTS{alertname="Watchdog"} and on () (max_over_time(c:rate5m[1h:5m]) > 0)', {"ALERTS", "c:rate5m"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    # The dashboard and rule checks below stand on this; prove it on known expressions first.
    assert metric_names(expr) == names


# --- What receiver/metrics.py exposes --------------------------------------------------------------

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


@pytest.fixture(scope="module")
def exposed() -> dict[str, str]:
    """{series name on /metrics: metric family}, from a live registry.

    From the families, not from collected samples: a labelled metric has no samples until its first
    labels() call, yet its series names are fixed by its type.
    """
    names = {}
    for family in Metrics().registry.collect():
        assert family.type in _SAMPLE_SUFFIXES, f"{family.name}: teach this test the {family.type} suffixes"
        for suffix in _SAMPLE_SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    assert "receiver_webhooks_total" in names and "receiver_webhook_duration_seconds_bucket" in names
    return names


# --- Dashboard -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard)
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def _variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, series selector) of every label_values() query variable."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert match, f"${variable['name']}: expected label_values(selector, label), got {query!r}"
        found.append((variable["name"], match.group(1)))
    return found


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboard_identity_and_variables(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "alert-receiver"
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["id"] is None, "an exported dashboard must not carry its database id"
    variables = _variables(dashboard)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "namespace"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"]["uid"] == "${datasource}", name
    assert variables["job"]["current"]["value"] == RECEIVER_JOB


def test_every_panel_queries_prometheus_through_the_variable(dashboard: dict[str, Any]) -> None:
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_uses_only_metrics_the_receiver_exposes(dashboard: dict[str, Any], exposed: dict[str, str]) -> None:
    queries = _panel_queries(dashboard) + _variable_queries(dashboard)
    assert len(queries) >= 15
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - exposed.keys() - PROMETHEUS_SERIES
        assert not unknown, f"{where}: {sorted(unknown)} not defined in receiver/metrics.py ({expr})"


def test_dashboard_filters_every_query_on_job_and_namespace(dashboard: dict[str, Any], exposed: dict[str, str]) -> None:
    for title, expr in _panel_queries(dashboard):
        for metric, matchers in selectors(expr, set(exposed) | PROMETHEUS_SERIES):
            assert 'job="$job"' in matchers and 'namespace=~"$namespace"' in matchers, f"{title}: {metric}"


def test_dashboard_shows_every_metric_the_receiver_exposes(dashboard: dict[str, Any], exposed: dict[str, str]) -> None:
    used = set().union(*(metric_names(expr) for _, expr in _panel_queries(dashboard)))
    missing = set(exposed.values()) - {exposed[name] for name in used if name in exposed}
    assert not missing, f"metrics without a panel: {sorted(missing)}"


# Each item of the issue, as a pattern some panel query must match.
REQUIRED_QUERIES = {
    "webhook traffic by outcome": r"sum by \(outcome\) \(rate\(receiver_webhooks_total\{",
    "webhook latency p50": r"histogram_quantile\(0\.5, .*receiver_webhook_duration_seconds_bucket",
    "webhook latency p99": r"histogram_quantile\(0\.99, .*receiver_webhook_duration_seconds_bucket",
    "duplicates ratio": r"receiver_duplicate_receipts_total.*\) / sum\(rate\(receiver_webhooks_total",
    "events by kind": r"sum by \(kind\) \(rate\(receiver_alert_events_total",
    "notifications by channel and result": r"sum by \(channel, result\) \(rate\(receiver_notifications_total",
    "failure reasons": r"sum by \(channel, result, reason\) .*receiver_notifications_total",
    "send latency p99 by channel": (
        r"histogram_quantile\(0\.99, sum by \(channel, le\) .*receiver_notification_send_duration_seconds_bucket"
    ),
    "outbox depth": r"receiver_outbox_pending\{",
    "oldest pending age": r"receiver_outbox_oldest_pending_seconds\{",
    "catalog misses": r"receiver_catalog_misses_total\{",
}


@pytest.mark.parametrize("pattern", REQUIRED_QUERIES.values(), ids=REQUIRED_QUERIES.keys())
def test_dashboard_has_the_required_panel(dashboard: dict[str, Any], pattern: str) -> None:
    assert any(re.search(pattern, expr) for _, expr in _panel_queries(dashboard)), pattern


def _substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_promtool_parses_every_dashboard_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool has no "check expression": each query becomes a recording rule, which check rules parses.
    promtool = require_tool("promtool")
    queries = _panel_queries(dashboard) + _variable_queries(dashboard)
    rules = [{"record": f"dashboard:query_{i}", "expr": _substitute(expr)} for i, (_, expr) in enumerate(queries)]
    path = write_yaml(tmp_path / "dashboard-queries.yaml", {"groups": [{"name": "dashboard", "rules": rules}]})
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_configmap_carries_the_dashboard_for_the_grafana_sidecar(dashboard: dict[str, Any]) -> None:
    configmap = load_yaml(DASHBOARDS_DIR / "configmap.yaml")
    assert configmap["apiVersion"] == "v1" and configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # label values are strings
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert list(configmap["data"]) == ["alert-receiver.json"]
    assert json.loads(configmap["data"]["alert-receiver.json"]) == dashboard


def test_self_monitoring_files_are_up_to_date(tmp_path: Path) -> None:
    result = run([sys.executable, str(DASHBOARDS_DIR / "generate.py"), "--out-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    generated = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert {p.relative_to(tmp_path).as_posix() for p in generated} == {
        "dashboards/configmap.yaml",
        "rules/receiver-prometheusrule.yaml",
        "rules/receiver-values-rules.yaml",
    }
    for path in generated:
        relative = path.relative_to(tmp_path)
        committed = ALERTMANAGER_DIR / relative
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"alertmanager/{relative} is stale: run `python alertmanager/dashboards/generate.py`"
        )


# --- Rules -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver_groups() -> list[dict[str, Any]]:
    return load_yaml(RECEIVER_RULES_FILE)["groups"]


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _receiver_rule_files(tmp_path: Path) -> list[Path]:
    """The plain rule file, the generated PrometheusRule's spec and its additionalPrometheusRulesMap entry."""
    crd = load_yaml(RULES_DIR / "receiver-prometheusrule.yaml")
    ml_crd = load_yaml(RULES_DIR / "prometheusrule.yaml")
    assert crd["kind"] == "PrometheusRule" and crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["metadata"]["labels"] == ml_crd["metadata"]["labels"], "both must be selected by Prometheus"
    assert crd["metadata"]["name"] != ml_crd["metadata"]["name"]
    rules_map = load_yaml(RULES_DIR / "receiver-values-rules.yaml")["additionalPrometheusRulesMap"]
    ml_map = load_yaml(RULES_DIR / "values-rules.yaml")["additionalPrometheusRulesMap"]
    assert not rules_map.keys() & ml_map.keys(), "Helm would merge the two entries into one"
    files = [RECEIVER_RULES_FILE, write_yaml(tmp_path / "prometheusrule-spec.yaml", crd["spec"])]
    for name, entry in rules_map.items():
        files.append(write_yaml(tmp_path / f"map-{name}.yaml", {"groups": entry["groups"]}))
    return files


def test_promtool_checks_the_receiver_rules(tmp_path: Path, receiver_groups: list[dict[str, Any]]) -> None:
    promtool = require_tool("promtool")
    count = sum(len(group["rules"]) for group in receiver_groups)
    for path in _receiver_rule_files(tmp_path):
        result = run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
        assert f"SUCCESS: {count} rules found" in result.stdout, f"{path.name}: {result.stdout}"


def test_promtool_unit_tests_of_the_receiver_rules_pass() -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "test", "rules", str(RECEIVER_RULE_TESTS)], cwd=RECEIVER_RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_unit_tests_load_the_receiver_rule_file() -> None:
    rule_files = load_yaml(RECEIVER_RULE_TESTS)["rule_files"]
    assert [(RECEIVER_RULE_TESTS.parent / f).resolve() for f in rule_files] == [RECEIVER_RULES_FILE]


def test_every_receiver_alert_has_a_firing_and_a_quiet_unit_test(receiver_groups: list[dict[str, Any]]) -> None:
    cases = [c for test in load_yaml(RECEIVER_RULE_TESTS)["tests"] for c in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _alerts(receiver_groups)}
    assert alerts == {
        "AlertReceiverDown",
        "AlertReceiverWebhooksRejected",
        "AlertReceiverNotificationsFailing",
        "AlertReceiverOutboxBacklog",
        "AlertReceiverNoWebhooks",
    }
    assert alerts - firing == set(), "alerts without a unit test where they fire"
    assert alerts - quiet == set(), "alerts without a unit test where they stay quiet"
    assert (firing | quiet) - alerts == set(), "unit tests for alerts that do not exist"


# A failed notification is a counter step, which a bad scrape cannot fake; each one is someone not told.
ALERTS_WITHOUT_FOR = {"AlertReceiverNotificationsFailing"}


def test_every_receiver_alert_carries_severity_and_annotations(receiver_groups: list[dict[str, Any]]) -> None:
    for rule in _alerts(receiver_groups):
        name = rule["alert"]
        # routes-self-monitoring.yaml sends alertname=~"AlertReceiver.+" to a pager.
        assert name.startswith("AlertReceiver"), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name} has no {key}"
        assert rule["annotations"]["runbook_url"].startswith("https://"), name
        assert bool(rule.get("for")) != (name in ALERTS_WITHOUT_FOR), f"{name}: `for` is not as intended"


def test_receiver_rules_use_only_metrics_the_receiver_exposes(
    receiver_groups: list[dict[str, Any]], exposed: dict[str, str]
) -> None:
    for rule in _alerts(receiver_groups):
        names = metric_names(rule["expr"])
        unknown = names - exposed.keys() - PROMETHEUS_SERIES
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not defined in receiver/metrics.py"
        # Only the receiver's own series: a selector without the job would match other services' `up`.
        for metric, matchers in selectors(rule["expr"], set(exposed) | {"up"}):
            assert f'job="{RECEIVER_JOB}"' in matchers, f"{rule['alert']}: {metric}{matchers}"


def test_servicemonitor_scrapes_the_receiver_service() -> None:
    monitor = load_yaml(DASHBOARDS_DIR / "servicemonitor.yaml")
    service = load_yaml(SERVICE_FILE)
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"] == load_yaml(RULES_DIR / "prometheusrule.yaml")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # Without spec.jobLabel, the job label is the Service's name: the job the rules and dashboard use.
    assert "jobLabel" not in monitor["spec"] and service["metadata"]["name"] == RECEIVER_JOB


# --- Alertmanager routes for self-monitoring -------------------------------------------------------


@pytest.fixture(scope="module")
def self_monitoring_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """values.yaml's alertmanager.config with routes-self-monitoring.yaml merged in as its comments say."""
    config = load_yaml(VALUES_FILE)["alertmanager"]["config"]
    extra = load_yaml(ROUTES_FILE)
    config["route"]["routes"] = extra["routes"] + config["route"]["routes"]
    config["receivers"] = config["receivers"] + extra["receivers"]
    return write_yaml(tmp_path_factory.mktemp("am") / "alertmanager.yml", config)


def test_amtool_accepts_the_self_monitoring_routes(self_monitoring_config: Path) -> None:
    amtool = require_tool("amtool")
    result = run([amtool, "check-config", str(self_monitoring_config)])
    assert result.returncode == 0, result.stdout + result.stderr


SELF_MONITORING_ROUTES = {
    # The heartbeat reaches the receiver and still the chart's 'null' route.
    "watchdog": ("alertname=Watchdog severity=none", "alert-receiver,null"),
    "receiver-alert": ("alertname=AlertReceiverDown severity=critical", "platform-pager,alert-receiver"),
    "receiver-warning": ("alertname=AlertReceiverOutboxBacklog severity=warning", "platform-pager,alert-receiver"),
    # Everything else is routed as values.yaml alone routes it.
    "model-alert": ("alertname=ModelErrorRatioHigh severity=critical model=fraud-detector", "alert-receiver"),
    "info-inhibitor": ("alertname=InfoInhibitor severity=none namespace=ml-serving", "null"),
    "info-severity": ("alertname=KubeletTooManyPods severity=info", "null"),
}


@pytest.mark.parametrize(("labels", "receivers"), SELF_MONITORING_ROUTES.values(), ids=SELF_MONITORING_ROUTES.keys())
def test_amtool_routes_with_the_self_monitoring_routes(
    self_monitoring_config: Path, labels: str, receivers: str
) -> None:
    amtool = require_tool("amtool")
    args = ["config", "routes", "test", f"--config.file={self_monitoring_config}", f"--verify.receivers={receivers}"]
    result = run([amtool, *args, *labels.split()])
    assert result.returncode == 0, f"{labels} went to {result.stdout.strip()!r}, expected {receivers!r}"


def _commented_route(text: str) -> list[Any]:
    """The route snippet in receiver-rules.yaml's comment, parsed."""
    lines = [line.lstrip(" ") for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("#   - receiver: alert-receiver"))
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    return yaml.safe_load("\n".join(block))


def test_watchdog_route_is_the_same_everywhere_it_is_shown() -> None:
    route = load_yaml(ROUTES_FILE)["routes"][0]
    assert route["matchers"] == ['alertname = "Watchdog"'] and route["continue"] is True
    assert _commented_route(RECEIVER_RULES_FILE.read_text(encoding="utf-8")) == [route]
    readme = (DASHBOARDS_DIR / "README.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)]
    assert [route] in blocks, "README.md shows another Watchdog route than routes-self-monitoring.yaml"
