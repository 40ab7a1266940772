"""`alert-receiver check-config FILE`: every problem with its location, or a short summary.

The file is read exactly as `serve --config FILE` reads it (environment included, `models_file` relative
to the file). Beyond what `serve` refuses at start, it also reports references that would route nowhere:
a model's team missing from `teams:`, a second entry for the same model and version, dashboards
configured without `grafana.url`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from receiver.api.errors import format_loc
from receiver.catalog import load_models_file
from receiver.config import ModelEntry, Settings, load_settings


def config_problems(path: Path) -> tuple[Settings | None, list[str]]:
    """Validate a config file (and its models_file); (settings or None, problems)."""
    try:
        settings = load_settings(path)
    except ValidationError as exc:
        return None, [f"{format_loc(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
    except ValueError as exc:  # unreadable, not YAML, not a mapping
        return None, [str(exc).removeprefix(f"{path}: ")]
    problems: list[str] = []
    located = [(f"models[{i}]", entry) for i, entry in enumerate(settings.models)]
    if settings.models_file:
        where = f"models_file {settings.models_file}"
        try:
            located += [(f"{where}: models[{i}]", e) for i, e in enumerate(load_models_file(settings.models_file))]
        except ValidationError as exc:
            problems += [f"{where}: models{format_loc(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
        except ValueError as exc:
            problems.append(f"models_file: {exc}")
    return settings, problems + _reference_problems(settings, located)


def _reference_problems(settings: Settings, located: list[tuple[str, ModelEntry]]) -> list[str]:
    """What validates field by field but cannot work as a whole."""
    problems: list[str] = []
    first: dict[tuple[str, str | None], str] = {}
    for where, entry in located:
        if entry.team and entry.team not in settings.teams:
            problems.append(f"{where}.team: team {entry.team!r} is not defined under teams")
        key = (entry.name, entry.version)
        if key in first:
            version = f"version {entry.version}" if entry.version else "without version"
            problems.append(f"{where}: {entry.name} {version} is already defined at {first[key]}")
        first.setdefault(key, where)
    if not settings.grafana.url:
        dashboards = [w for w, e in located if e.dashboard] + (
            ["grafana.default_dashboard"] if settings.grafana.default_dashboard else []
        )
        if dashboards:
            problems.append(f"grafana.url: required for the dashboards at {', '.join(dashboards)}")
    return problems


def _message(error: dict) -> str:  # type: ignore[type-arg]
    msg = error["msg"]
    return msg.removeprefix("Value error, ")


def check_config(path: Path) -> int:
    """Print every problem (exit 1) or a one-line summary (exit 0)."""
    settings, problems = config_problems(path)
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    assert settings is not None
    from_file = len(load_models_file(settings.models_file)) if settings.models_file else 0
    print(
        f"{path}: OK: {len(settings.models) + from_file} models"
        f"{f' ({from_file} from models_file)' if settings.models_file else ''}, {len(settings.routes)} routes, "
        f"{len(settings.teams)} teams; slack {'configured' if settings.slack.token else 'not configured (log)'}, "
        f"email {'configured' if settings.smtp.host else 'not configured (log)'}"
    )
    return 0
