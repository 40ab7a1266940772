"""`alert-receiver check-config FILE`: every problem with its location, or a short summary."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from receiver.api.errors import format_loc
from receiver.catalog import load_models_file
from receiver.config import Settings, read_config_file


def config_problems(path: Path) -> tuple[Settings | None, list[str]]:
    """Validate a config file (and its models_file); (settings or None, problems)."""
    try:
        values = read_config_file(path)
    except ValueError as exc:
        return None, [str(exc)]
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        return None, [f"{format_loc(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
    problems: list[str] = []
    if settings.models_file:
        models_path = settings.models_file if settings.models_file.is_absolute() else path.parent / settings.models_file
        try:
            load_models_file(models_path)
        except ValidationError as exc:
            problems += [f"models_file {models_path}: {format_loc(tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]
        except ValueError as exc:
            problems.append(f"models_file: {exc}")
    return settings, problems


def _message(error: dict) -> str:  # type: ignore[type-arg]
    msg = error["msg"]
    return msg.removeprefix("Value error, ")


def check_config(path: Path) -> int:
    settings, problems = config_problems(path)
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    assert settings is not None
    print(
        f"{path}: OK: {len(settings.models)} models"
        f"{' (+ models_file)' if settings.models_file else ''}, {len(settings.routes)} routes, "
        f"{len(settings.teams)} teams; slack {'configured' if settings.slack.token else 'not configured (log)'}, "
        f"email {'configured' if settings.smtp.host else 'not configured (log)'}"
    )
    return 0
