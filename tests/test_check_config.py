"""`alert-receiver check-config FILE`: every problem with its location, exit codes, the example config.

The CLI runs as a real process (`python -m receiver check-config FILE`); the cross-reference cases run
in-process through the same function, as a table.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from receiver.checkconfig import config_problems
from receiver.config import Settings, load_settings
from receiver.durations import format_duration
from tests.support import REPO, receiver_env

EXAMPLE = REPO / "receiver.example.yaml"


def check_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", str(path)],
        cwd=path.parent,
        env=receiver_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_config_is_valid(tmp_path: Path) -> None:
    done = check_config(EXAMPLE)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (
        f"{EXAMPLE}: OK: 3 models, 4 routes, 3 teams; slack not configured (log), email not configured (log)\n"
    )


def test_summary_reflects_the_environment_and_the_models_file(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text("- name: m\n- name: n\n", encoding="utf-8")
    config = tmp_path / "receiver.yaml"
    config.write_text("models_file: models.yaml\nmodels: [{name: a}]\n", encoding="utf-8")
    done = check_config(config, RECEIVER_SLACK_TOKEN="xoxb-secret-token", RECEIVER_SMTP__HOST="mail.example.com")
    assert done.returncode == 0, done.stderr
    assert "OK: 3 models (2 from models_file), 0 routes, 0 teams; slack configured, email configured" in done.stdout
    assert "xoxb-secret-token" not in done.stdout + done.stderr


BROKEN = """\
routs: []
port: not-a-port
writer_stall_timeout: 0s
models:
  - name: fraud-detector
    owner: alice
    runbook_url: javascript:alert(1)
  - owner: bob@example.com
teams:
  risk:
    slack: ["#risk-channel"]
routes:
  - matchers: ['severity="critical"']
  - matchers: [alertname=ServiceDown]
    slack: [admin]
  - matchers: ['severity=="x"', 'model=~"("']
    email: [owner, not an email]
    continue: maybe
grafana:
  url: grafana.example.com
  time_padding: 5 minutes
"""


def test_every_problem_is_printed_with_its_location(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN, encoding="utf-8")
    done = check_config(config)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    expected = [
        "routs: Extra inputs are not permitted",
        "port: Input should be a valid integer",
        "writer_stall_timeout: must be longer than 0s",
        "models[0].owner: 'alice' is not an email address",
        "models[0].runbook_url: 'javascript:alert(1)' is not an absolute http(s) URL",
        "models[1].name: Field required",
        "teams.risk.slack[0]: '#risk-channel' is not a Slack user id (U0123ABCD) or an email address",
        "routes[1].slack[0]: 'admin' is not a Slack user id (U0123ABCD) or an email address",
        "routes[2].matchers[0]: invalid matcher 'severity==\"x\"'",
        "routes[2].matchers[1]: invalid matcher 'model=~\"(\"': bad regular expression",
        "routes[2].email[1]: 'not an email' is not an email address",
        "routes[2].continue: Input should be a valid boolean",
        "grafana.url: 'grafana.example.com' is not an absolute http(s) URL",
        "grafana.time_padding: invalid duration '5 minutes'",
    ]
    for problem in expected:
        assert any(line.startswith(f"{config}: {problem}") for line in lines), (problem, done.stderr)
    assert lines[-1] == f"{len(expected)} problem(s) found"
    assert len(lines) == len(expected) + 1


@pytest.mark.parametrize(
    ("content", "problem", "detail"),
    [
        ("models: [\n  - a\n", "invalid YAML: while parsing a flow node", "line 2, column 3"),
        ("- just\n- a list\n", "the top level must be a mapping of settings", ""),
    ],
)
def test_unparseable_files_are_one_problem(tmp_path: Path, content: str, problem: str, detail: str) -> None:
    config = tmp_path / "receiver.yaml"
    config.write_text(content, encoding="utf-8")
    done = check_config(config)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{config}: {problem}")
    assert detail in done.stderr
    assert done.stderr.endswith("1 problem(s) found\n")


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    done = check_config(tmp_path / "missing.yaml")
    assert done.returncode == 1
    assert "cannot read config file" in done.stderr and "Traceback" not in done.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("config", "models_file", "problems"),
    [
        pytest.param(
            "models: [{name: m, team: riks}]\nteams: {risk: {email: [r@example.com]}}\n",
            None,
            ["models[0].team: team 'riks' is not defined under teams"],
            id="unknown-team",
        ),
        pytest.param(
            "models: [{name: m, version: '1'}, {name: m}, {name: m, version: '1'}]\n",
            None,
            ["models[2]: m version 1 is already defined at models[0]"],
            id="duplicate-entry",
        ),
        pytest.param(
            "models: [{name: m, dashboard: {uid: d}}]\ngrafana: {default_dashboard: {uid: ml}}\n",
            None,
            ["grafana.url: required for the dashboards at models[0], grafana.default_dashboard"],
            id="dashboards-without-grafana-url",
        ),
        pytest.param(
            "models_file: models.yaml\nmodels: [{name: m}]\n",
            "- name: ok\n- name: bad\n  emails: [nope]\n- owner: x@example.com\n",
            [
                "models_file {dir}/models.yaml: models[1].emails[0]: 'nope' is not an email address",
                "models_file {dir}/models.yaml: models[2].name: Field required",
            ],
            id="models-file-entries",
        ),
        pytest.param(
            "models_file: models.yaml\nmodels: [{name: m}]\n",
            "- name: m\n- name: n\n  team: ghosts\n",
            [
                "models_file {dir}/models.yaml: models[0]: m without version is already defined at models[0]",
                "models_file {dir}/models.yaml: models[1].team: team 'ghosts' is not defined under teams",
            ],
            id="models-file-references",
        ),
        pytest.param(
            "models_file: missing.yaml\n",
            None,
            ["models_file: cannot read models file {dir}/missing.yaml: No such file or directory"],
            id="models-file-missing",
        ),
    ],
)
def test_cross_reference_problems(tmp_path: Path, config: str, models_file: str | None, problems: list[str]) -> None:
    if models_file is not None:
        write(tmp_path / "models.yaml", models_file)
    settings, found = config_problems(write(tmp_path / "receiver.yaml", config))
    assert settings is not None
    assert found == [p.format(dir=tmp_path) for p in problems]


def test_serve_refuses_a_broken_config_at_start(tmp_path: Path) -> None:
    config = write(tmp_path / "broken.yaml", "routes:\n  - matchers: ['severity==\"x\"']\n")
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "serve", "--config", str(config)],
        cwd=tmp_path,
        env=receiver_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid matcher" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_a_broken_models_file_at_start(tmp_path: Path) -> None:
    write(tmp_path / "models.yaml", "- name: m\n  owner: not-an-email\n")
    config = write(tmp_path / "receiver.yaml", "models_file: models.yaml\n")
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "serve", "--config", str(config), "--port", "1"],
        cwd=tmp_path,
        env=receiver_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not an email address" in done.stderr and "Traceback" not in done.stderr


def test_config_file_from_the_environment_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RECEIVER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECEIVER_CONFIG", str(EXAMPLE))
    monkeypatch.setenv("RECEIVER_GRAFANA__DATASOURCE_UID", "from-env")
    settings = load_settings()
    assert settings.grafana.url == "https://grafana.example.com"  # from the file
    assert settings.grafana.datasource_uid == "from-env"  # the environment wins over the file
    assert [m.name for m in settings.models] == ["fraud-detector", "churn-predictor", "churn-predictor"]


# --- docs/configuration.md documents every key of config.py, with its default ---------------------------


def _nested_model(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """(path suffix, model) when a field holds a model, a list of models or a name -> model mapping."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _nested_model(inner[0]) if len(inner) == 1 else None
    args = get_args(annotation)
    if get_origin(annotation) is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "[]", args[0]
    if get_origin(annotation) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return ".<name>", args[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "", annotation
    return None


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        if value == type(value)():
            return "section"
        value = value.model_dump(by_alias=True)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return '""' if value == "" else str(value)


def _keys(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        keys[path] = _default(field)
        nested = _nested_model(field.annotation)
        if nested:
            keys.update(_keys(nested[1], f"{path}{nested[0]}."))
    return keys


def test_configuration_reference_documents_every_key_with_its_default() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", doc, flags=re.MULTILINE)
    documented = {key: default.strip("`") for key, default in rows}
    assert len(documented) == len(rows), "a key is documented twice"
    assert documented == _keys(Settings)
