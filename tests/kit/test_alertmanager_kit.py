"""The Alertmanager and Prometheus kit: values snippet, AlertmanagerConfig CRD, alert rules.

Runs the real tools (amtool 0.25, promtool 2.42 from Debian): a missing tool skips, unless
RECEIVER_REQUIRE_TOOLS=1 (CI), where it fails.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from receiver.config import Settings
from tests.kit._tools import (
    ALERTMANAGER_DIR,
    RULE_TESTS_DIR,
    RULES_DIR,
    RULES_FILE,
    VALUES_FILE,
    load_yaml,
    require_tool,
    run,
    webhook_config,
    write_yaml,
)

# The receiver answers 413 above this; Alertmanager would then re-send the group every group_interval.
RECEIVER_BODY_LIMIT = Settings.model_fields["max_body_bytes"].default
# Generous upper bound for one alert in the JSON body (labels, annotations, generatorURL).
MAX_ALERT_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load_yaml(VALUES_FILE)


@pytest.fixture(scope="module")
def am_config_file(values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alertmanager.config from values.yaml, as the standalone file the chart renders.

    credentials_file points at /etc/alertmanager/secrets/..., which does not exist here. amtool 0.25's
    check-config does not open it (it passes with a missing file), so the path is left as it is.
    """
    return write_yaml(tmp_path_factory.mktemp("am") / "alertmanager.yml", values["alertmanager"]["config"])


@pytest.fixture(scope="module")
def rule_groups() -> list[dict[str, Any]]:
    return load_yaml(RULES_FILE)["groups"]


def _alert_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _rule_test_cases() -> list[dict[str, Any]]:
    """Every alert_rule_test entry of every promtool unit test file."""
    cases = []
    for path in sorted(RULE_TESTS_DIR.glob("*.yaml")):
        for test in load_yaml(path)["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


# --- Alertmanager config (values.yaml) -----------------------------------------------------------


def test_amtool_accepts_the_values_config(am_config_file: Path) -> None:
    amtool = require_tool("amtool")
    result = run([amtool, "check-config", str(am_config_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "4 inhibit rules" in result.stdout
    assert "2 receivers" in result.stdout


# (labels as amtool takes them, receiver the alert must reach)
ROUTING_CASES = {
    "critical-model-alert": (
        "alertname=ModelErrorRatioHigh severity=critical model=fraud-detector namespace=ml-serving",
        "alert-receiver",
    ),
    "warning-model-alert": (
        "alertname=ModelFeatureDrift severity=warning model=fraud-detector namespace=ml-serving",
        "alert-receiver",
    ),
    "service-down-without-model": ("alertname=ServiceDown severity=critical job=service-a", "alert-receiver"),
    "watchdog": ("alertname=Watchdog severity=none", "null"),
    "info-inhibitor": ("alertname=InfoInhibitor severity=none namespace=ml-serving", "null"),
    # The null route comes first: even a Watchdog carrying severity=critical never reaches the receiver.
    "watchdog-route-first": ("alertname=Watchdog severity=critical", "null"),
    "info-severity": ("alertname=KubeletTooManyPods severity=info namespace=ml-serving", "null"),
    "no-severity": ("alertname=NoSeverity", "null"),
}


@pytest.mark.parametrize(("labels", "receiver"), ROUTING_CASES.values(), ids=ROUTING_CASES.keys())
def test_amtool_routes_alerts(am_config_file: Path, labels: str, receiver: str) -> None:
    amtool = require_tool("amtool")
    args = ["config", "routes", "test", f"--config.file={am_config_file}", f"--verify.receivers={receiver}"]
    result = run([amtool, *args, *labels.split()])
    # --verify.receivers makes amtool exit 1 when the alert resolves to other receivers.
    assert result.returncode == 0, f"{labels} went to {result.stdout.strip()!r}, expected {receiver!r}"
    assert result.stdout.strip() == receiver


def test_values_keep_what_the_chart_needs(values: dict[str, Any]) -> None:
    config = values["alertmanager"]["config"]
    assert config["route"]["receiver"] == "null"
    assert {"name": "null"} in config["receivers"]
    assert "/etc/alertmanager/config/*.tmpl" in config["templates"]
    inhibit_targets = [rule["target_matchers"] for rule in config["inhibit_rules"]]
    assert len(config["inhibit_rules"]) == 4, "the chart's four default inhibit rules"
    assert ["alertname = InfoInhibitor"] in inhibit_targets
    assert set(config["route"]["group_by"]) == {"namespace", "alertname", "model"}
    assert values["alertmanager"]["alertmanagerSpec"]["replicas"] == 2


def test_webhook_sends_resolved_with_a_mounted_token_and_bounded_bodies(values: dict[str, Any]) -> None:
    webhook = webhook_config(values)
    assert webhook["send_resolved"] is True
    assert 0 < webhook["max_alerts"] * MAX_ALERT_BYTES < RECEIVER_BODY_LIMIT
    auth = webhook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert "credentials" not in auth, "the token must come from the mounted Secret, not the values"
    match = re.fullmatch(r"/etc/alertmanager/secrets/([^/]+)/token", auth["credentials_file"])
    assert match, auth["credentials_file"]
    # alertmanagerSpec.secrets is what mounts /etc/alertmanager/secrets/<name>/.
    assert match.group(1) in values["alertmanager"]["alertmanagerSpec"]["secrets"]


def test_alertmanagerconfig_crd_matches_the_values_route(values: dict[str, Any]) -> None:
    # amtool cannot read a CRD: check its structure and that it says what values.yaml says.
    crd = load_yaml(ALERTMANAGER_DIR / "alertmanagerconfig.yaml")
    assert crd["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert crd["kind"] == "AlertmanagerConfig"
    assert crd["metadata"]["name"] and crd["metadata"]["namespace"]
    spec = crd["spec"]
    receivers = {r["name"]: r for r in spec["receivers"]}
    assert spec["route"]["receiver"] in receivers
    assert spec["route"]["groupBy"] == values["alertmanager"]["config"]["route"]["group_by"]
    assert {"name": "severity", "matchType": "=~", "value": "warning|critical"} in spec["route"]["matchers"]
    [hook] = receivers[spec["route"]["receiver"]]["webhookConfigs"]
    expected = webhook_config(values)
    assert hook["url"] == expected["url"]
    assert hook["sendResolved"] is True
    assert hook["maxAlerts"] == expected["max_alerts"]
    assert hook["httpConfig"]["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "alert-receiver", "key": "token"},
    }


# --- Rules -----------------------------------------------------------------------------------------


def _rule_files_to_check(tmp_path: Path) -> list[Path]:
    """The plain rule file, the PrometheusRule's spec and each additionalPrometheusRulesMap entry."""
    files = [RULES_FILE]
    crd = load_yaml(RULES_DIR / "prometheusrule.yaml")
    assert crd["kind"] == "PrometheusRule" and crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    files.append(write_yaml(tmp_path / "prometheusrule-spec.yaml", crd["spec"]))
    rules_map = load_yaml(RULES_DIR / "values-rules.yaml")["additionalPrometheusRulesMap"]
    assert rules_map, "additionalPrometheusRulesMap is empty"
    for name, entry in rules_map.items():
        files.append(write_yaml(tmp_path / f"map-{name}.yaml", {"groups": entry["groups"]}))
    return files


def test_promtool_checks_every_rule_file(tmp_path: Path, rule_groups: list[dict[str, Any]]) -> None:
    promtool = require_tool("promtool")
    count = sum(len(group["rules"]) for group in rule_groups)
    for path in _rule_files_to_check(tmp_path):
        result = run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
        assert f"SUCCESS: {count} rules found" in result.stdout, f"{path.name}: {result.stdout}"


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    files = sorted(RULE_TESTS_DIR.glob("*.yaml"))
    assert files, "no promtool unit tests"
    result = run([promtool, "test", "rules", *[str(f) for f in files]], cwd=RULE_TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_unit_tests_load_the_source_rule_file() -> None:
    for path in sorted(RULE_TESTS_DIR.glob("*.yaml")):
        assert load_yaml(path)["rule_files"] == ["../ml-model-rules.yaml"], path.name


def test_every_alert_has_a_firing_and_a_quiet_unit_test(rule_groups: list[dict[str, Any]]) -> None:
    cases = _rule_test_cases()
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _alert_rules(rule_groups)}
    assert alerts - firing == set(), "alerts without a unit test where they fire"
    assert alerts - quiet == set(), "alerts without a unit test where they stay quiet"
    assert (firing | quiet) - alerts == set(), "unit tests for alerts that do not exist"


def test_every_alert_carries_severity_and_annotations(rule_groups: list[dict[str, Any]]) -> None:
    for rule in _alert_rules(rule_groups):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name} has no {key}"
        assert rule["annotations"]["runbook_url"].startswith("https://"), name
        assert rule.get("for"), f"{name} has no `for`: one bad scrape would page"


def test_fired_alerts_carry_model_or_target_labels() -> None:
    # promtool compares exp_labels exactly, so these expectations prove what the rules really emit.
    for case in _rule_test_cases():
        for alert in case.get("exp_alerts") or []:
            labels = alert["exp_labels"]
            needed = {"job", "instance"} if case["alertname"] == "ServiceDown" else {"model", "namespace"}
            assert needed <= labels.keys(), f"{case['alertname']} fired without {needed - labels.keys()}"


def test_generated_files_are_up_to_date(tmp_path: Path) -> None:
    result = run([sys.executable, str(RULES_DIR / "generate.py"), "--out-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    generated = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert {p.relative_to(tmp_path).as_posix() for p in generated} == {
        "rules/prometheusrule.yaml",
        "rules/values-rules.yaml",
        "examples/alertmanager.yml",
    }
    for path in generated:
        relative = path.relative_to(tmp_path)
        committed = ALERTMANAGER_DIR / relative
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"alertmanager/{relative} is stale: run `python alertmanager/rules/generate.py`"
        )
