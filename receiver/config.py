"""Settings: embedded defaults < YAML config file < `RECEIVER_*` environment variables.

This is the only module that reads the environment. Nested settings use `__` in variable names, e.g.
`RECEIVER_SLACK__TOKEN` or `RECEIVER_SMTP__HOST`; the common secrets also have short names
(`RECEIVER_SLACK_TOKEN`, `RECEIVER_SMTP_PASSWORD`, `RECEIVER_WEBHOOK_TOKEN`). Secrets are `SecretStr`,
so they print as `**********` wherever a setting is shown.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from receiver.durations import parse_duration
from receiver.matchers import parse_matcher

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./alert-receiver.db"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")  # the same rule the Slack notifier applies
CATALOG_TOKENS = ("owner", "team")


# Validators run per list item, so a problem's location names the item: routes[2].matchers[0].
def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _slack_user(value: str) -> str:
    if not (_EMAIL.fullmatch(value) or _SLACK_USER_ID.fullmatch(value)):
        raise ValueError(f"{value!r} is not a Slack user id (U0123ABCD) or an email address")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    return value


def _matcher(value: str) -> str:
    parse_matcher(value)
    return value


def _email_recipient(value: str) -> str:
    return value if value in CATALOG_TOKENS else _email(value)


def _slack_recipient(value: str) -> str:
    return value if value in CATALOG_TOKENS else _slack_user(value)


Email = Annotated[str, AfterValidator(_email)]
SlackUser = Annotated[str, AfterValidator(_slack_user)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
MatcherText = Annotated[str, AfterValidator(_matcher)]
EmailRecipient = Annotated[str, AfterValidator(_email_recipient)]  # owner, team or an address
SlackRecipient = Annotated[str, AfterValidator(_slack_recipient)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DashboardRef(_Strict):
    """A Grafana dashboard and the variables to fill from labels or fixed values."""

    uid: str
    slug: str = ""
    # var name -> label name to copy (`{label}`) or a fixed value; default: model and namespace labels.
    variables: dict[str, str] = Field(default_factory=dict)


class ModelEntry(_Strict):
    """One model in the catalog."""

    name: str
    version: str | None = None
    owner: Email | None = None
    team: str | None = None
    slack: SlackUser | None = None  # Slack user id (U…) or email; defaults to owner
    emails: list[Email] = Field(default_factory=list)
    runbook_url: HttpUrl | None = None
    dashboard: DashboardRef | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Recipients(_Strict):
    """Who hears about an alert, per channel. `owner` and `team` resolve through the catalog."""

    slack: list[SlackRecipient] = Field(default_factory=list)
    email: list[EmailRecipient] = Field(default_factory=list)


class Route(Recipients):
    """First matching route wins unless `continue` is true."""

    name: str = ""
    matchers: list[MatcherText] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    # False: matching alerts are stored (history, metrics) but nobody is notified — e.g. Watchdog,
    # routed to the receiver only to prove the pipeline works.
    notify: bool = True


class Team(_Strict):
    """A team's contacts, used when a route names `team`."""

    slack: list[SlackUser] = Field(default_factory=list)
    email: list[Email] = Field(default_factory=list)


class GrafanaSettings(_Strict):
    url: HttpUrl | None = None  # e.g. https://grafana.example.com ; no links are built without it
    org_id: int = 1
    datasource_uid: str = "prometheus"
    default_dashboard: DashboardRef | None = None
    time_padding: Duration = timedelta(minutes=30)


class SlackSettings(_Strict):
    token: SecretStr | None = None
    base_url: str = "https://slack.com/api/"
    timeout: float = 30.0


class SmtpSettings(_Strict):
    host: str | None = None
    port: int = 25
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "alert-receiver@localhost"
    timeout: float = 30.0


class DispatchSettings(_Strict):
    enabled: bool = True  # run the dispatcher inside `serve`
    poll_interval: Duration = timedelta(seconds=1)
    batch_size: int = 50
    concurrency: int = 8
    backoff_initial: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=10)
    give_up_after: Duration = timedelta(hours=24)
    lease: Duration = timedelta(minutes=2)  # a claimed row not finished by then is claimed again
    slack_channel_interval: Duration = timedelta(seconds=1)  # Slack's ~1 message/s per channel


class Settings(BaseSettings):
    """All settings. Environment wins over the config file, which wins over these defaults."""

    model_config = SettingsConfigDict(
        env_prefix="RECEIVER_", env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    # Commit webhooks in a child process (a second core for the write path); false: a thread of this one.
    writer_process: bool = True
    # A writer process that answers nothing this long while webhooks wait is killed and replaced
    # (they get 503; Alertmanager retries). Far above any healthy commit, below nothing useful.
    writer_stall_timeout: PositiveDuration = timedelta(seconds=30)
    host: str = "127.0.0.1"
    port: int = 9095
    webhook_token: SecretStr | None = None
    api_token: SecretStr | None = None  # required on /api/v1/* when set
    max_body_bytes: int = 5 * 1024 * 1024
    dedup_window: Duration = timedelta(minutes=10)
    notify_on_repeat: bool = True
    retention: Duration = timedelta(days=90)  # history not seen for this long is deleted
    retention_interval: Duration = timedelta(hours=1)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    external_url: str | None = None  # this receiver's own URL, for links to the history page

    model_label: str = "model"
    model_version_label: str = "model_version"
    models: list[ModelEntry] = Field(default_factory=list)
    models_file: Path | None = None
    teams: dict[str, Team] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default_route: Recipients = Field(default_factory=lambda: Recipients(slack=["owner"], email=["owner"]))
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    templates_dir: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: an operator's `RECEIVER_*` variable overrides the file (init values).
        return env_settings, init_settings


# Short names for the secrets people set most, so they need not know the nested `__` form.
_SECRET_ALIASES = {
    "RECEIVER_SLACK_TOKEN": ("slack", "token"),
    "RECEIVER_SMTP_PASSWORD": ("smtp", "password"),
}


def read_config_file(path: Path) -> dict[str, Any]:
    """Load the YAML config file as a mapping; ValueError saying what is wrong otherwise."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of settings")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, the config file (argument or RECEIVER_CONFIG) and the environment."""
    path = config_file or (Path(os.environ["RECEIVER_CONFIG"]) if os.environ.get("RECEIVER_CONFIG") else None)
    values: dict[str, Any] = read_config_file(path) if path else {}
    if path and values.get("models_file"):
        values["models_file"] = str((path.parent / values["models_file"]).resolve())
    for env_name, (section, key) in _SECRET_ALIASES.items():
        if os.environ.get(env_name):
            values.setdefault(section, {})[key] = os.environ[env_name]
    values.update(overrides)
    return Settings(**values)
