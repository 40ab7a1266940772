#!/usr/bin/env python3
"""Generate alert-receiver's self-monitoring files from their single sources of truth.

Sources (edit these by hand):
    alertmanager/dashboards/alert-receiver.json   the Grafana dashboard (export it from Grafana after editing there)
    alertmanager/rules/receiver-rules.yaml        plain Prometheus rule file: alerts on the receiver's own failures

Generated (never edit; tests/kit/test_receiver_monitoring.py fails when they are out of date):
    alertmanager/dashboards/configmap.yaml           the dashboard as a ConfigMap for Grafana's dashboard sidecar
    alertmanager/rules/receiver-prometheusrule.yaml  the receiver rules as a PrometheusRule custom resource
    alertmanager/rules/receiver-values-rules.yaml    the receiver rules as an additionalPrometheusRulesMap entry

A script of its own rather than more outputs of alertmanager/rules/generate.py: the kit tests pin that
script's outputs to the ML model rules. The PrometheusRule and values shapes, the YAML style and the
release label come from it, so both scripts write the same kind of files.

Usage:
    python alertmanager/dashboards/generate.py                  # rewrite the files in place
    python alertmanager/dashboards/generate.py --out-dir DIR    # write them under DIR instead (same layout)
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent
KIT_DIR = DASHBOARDS_DIR.parent  # alertmanager/
DASHBOARD_SOURCE = DASHBOARDS_DIR / "alert-receiver.json"
RULES_SOURCE = KIT_DIR / "rules" / "receiver-rules.yaml"
GENERATOR = "alertmanager/dashboards/generate.py"

RULE_NAME = "alert-receiver"
CONFIGMAP_NAME = "alert-receiver-dashboard"
# kube-prometheus-stack's Grafana sidecar loads every ConfigMap with this label (grafana.sidecar.dashboards
# label/labelValue, the chart's defaults). It looks in Grafana's own namespace unless searchNamespace is set.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


def _rules_generator() -> ModuleType:
    """alertmanager/rules/generate.py, loaded by path (the kit directories are not packages)."""
    spec = importlib.util.spec_from_file_location("rules_generate", KIT_DIR / "rules" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_configmap(dashboard_json: str, namespace: str) -> dict[str, Any]:
    """The dashboard JSON, verbatim, as a ConfigMap the Grafana sidecar picks up."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": dict(DASHBOARD_LABEL)},
        "data": {DASHBOARD_SOURCE.name: dashboard_json},
    }


def render() -> dict[str, str]:
    """Return {path relative to alertmanager/: file content} for every generated file."""
    rules = _rules_generator()
    groups = rules._load(RULES_SOURCE)["groups"]
    rule_source = "alertmanager/rules/receiver-rules.yaml"
    configmap = dashboard_configmap(DASHBOARD_SOURCE.read_text(encoding="utf-8"), rules.RULE_NAMESPACE)
    return {
        "dashboards/configmap.yaml": rules._dump(
            configmap, "alertmanager/dashboards/alert-receiver.json", generator=GENERATOR
        ),
        "rules/receiver-prometheusrule.yaml": rules._dump(
            rules.prometheus_rule(RULE_NAME, groups), rule_source, generator=GENERATOR
        ),
        "rules/receiver-values-rules.yaml": rules._dump(
            rules.rules_values(RULE_NAME, groups), rule_source, generator=GENERATOR
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the generated files under --out-dir (default: alertmanager/ itself)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=KIT_DIR, help="directory standing for alertmanager/")
    args = parser.parse_args(argv)
    for relative, content in render().items():
        target = args.out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
