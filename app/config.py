"""The one typed settings object; every value can be set as an ``AEGIR_*`` variable."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.catalog.inputs import LETS_ENCRYPT, AcmeSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_SECRET = "change-me-development-only"  # noqa: S105 - a known placeholder, refused in production


def _seconds(value: object) -> object:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        return float(value)
    return value


# Durations read as seconds ("2.5") or ISO 8601 ("PT2.5S").
Duration = Annotated[timedelta, BeforeValidator(_seconds)]


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AEGIR_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6390/0"
    # Start a Redis server of our own (the embedded default) instead of using an external one.
    redis_embedded: bool = True
    secret_key: str = PLACEHOLDER_SECRET
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    page_size_max: int = Field(default=200, ge=1)
    redis_timeout: Duration = timedelta(seconds=1)
    # Extra catalogue registrars, "module:function", besides installed plugins.
    catalog_modules: list[str] = []
    # Installed plugins (entry point names) to leave out: `make run` leaves out the
    # example plugin that `make install` installs for the tests.
    plugins_skip: list[str] = []

    # Runs: a worker holds a lease it renews every heartbeat; a lease left to expire
    # means the worker is gone, and the run is settled as lost within lease + sweep.
    run_lease: Duration = timedelta(seconds=15)
    run_heartbeat: Duration = timedelta(seconds=3)
    sweep_interval: Duration = timedelta(seconds=1)
    # Attempts a run gets when its worker keeps being lost (a task that kills its worker
    # every time): after the last, the run ends lost instead of being run again.
    run_max_attempts: int = Field(default=3, ge=1)
    # A worker asked to stop (SIGTERM) lets its runs finish this long, then stops them:
    # it hands back those safe to run again, and cancels the others.
    worker_stop_grace: Duration = timedelta(seconds=30)
    # Queued runs older than this are enqueued again, in case Redis never got them.
    requeue_after: Duration = timedelta(seconds=5)
    # Between SIGTERM and SIGKILL when a run is cancelled.
    cancel_grace: Duration = timedelta(seconds=5)
    # How long a worker waits for a wake-up before it looks at the queue anyway.
    worker_poll: Duration = timedelta(seconds=2)
    worker_max_jobs: int = Field(default=10, ge=1)
    # A relay's consumer name (default: host and pid), and how long another relay's
    # unacknowledged events wait before this one takes them over.
    relay_name: str = ""
    # Accounts: cookies marked Secure when served over HTTPS (directly or behind a proxy).
    https: bool = False
    session_max_age: Duration = timedelta(hours=12)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout: Duration = timedelta(minutes=15)
    token_default_lifetime: Duration = timedelta(days=90)
    # Who a bearer token is, kept this long in each API process (0: not kept): a token
    # revoked by another process still works this long there (app.security.auth).
    # Process logs: "text" for people, "json" (one object a line, with run and request ids).
    log_format: Literal["text", "json"] = "text"
    # Prometheus's bearer token for GET /metrics; empty: only site admins may read it.
    metrics_token: str = ""
    auth_cache: Duration = timedelta(seconds=5)
    relay_claim_idle: Duration = timedelta(seconds=10)
    # Schedules (relay/schedules.py): every relay looks for due slots this often; a slot
    # found due later than the grace window after its time counts as missed.
    schedule_tick: Duration = timedelta(seconds=5)
    schedule_grace: Duration = timedelta(minutes=10)
    work_dir: Path | None = None
    # The private key Ansible connects to 'ssh' servers with (their authorized_keys must
    # hold its public half); default var/ssh/id_ed25519, used when the file exists.
    ssh_key: Path | None = None
    # Host keys of the 'ssh' servers, which Ansible checks (default var/ssh/known_hosts;
    # without the file, the Aegir user's own ~/.ssh/known_hosts).
    ssh_known_hosts: Path | None = None
    # Certificates for sites served over HTTPS (ACME, HTTP-01, certbot on the server):
    # the ACME directory (Let's Encrypt's production one; its staging one is
    # https://acme-staging-v02.api.letsencrypt.org/directory), the contact e-mail the
    # account registers with (none when empty), a CA bundle the client trusts for a
    # private ACME server's HTTPS (a path on the servers), and how many days before
    # expiry renew_certificate renews.
    acme_directory: str = LETS_ENCRYPT
    acme_email: str = ""
    acme_ca_bundle: Path | None = None
    acme_renew_before_days: int = Field(default=30, ge=1, le=365)

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Settings:
        if self.work_dir is None:
            self.work_dir = self.var_dir / "work"
        if self.ssh_key is None:
            self.ssh_key = self.var_dir / "ssh" / "id_ed25519"
        if self.ssh_known_hosts is None:
            self.ssh_known_hosts = self.var_dir / "ssh" / "known_hosts"
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / 'aegir.sqlite3'}"
        if self.env is Environment.production and self.secret_key == PLACEHOLDER_SECRET:
            raise ValueError("AEGIR_SECRET_KEY must be set to a real secret outside development")
        return self

    @property
    def ssh_key_file(self) -> Path | None:
        return self.ssh_key if self.ssh_key is not None and self.ssh_key.is_file() else None

    @property
    def ssh_known_hosts_file(self) -> Path | None:
        known = self.ssh_known_hosts
        return known if known is not None and known.is_file() else None

    def acme(self) -> AcmeSettings:
        """The ``AEGIR_ACME_*`` settings, as the worker hands them to every task."""
        return AcmeSettings(
            directory=self.acme_directory,
            email=self.acme_email or None,
            ca_bundle=str(self.acme_ca_bundle) if self.acme_ca_bundle else None,
            renew_before_days=self.acme_renew_before_days,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # SQLite, one writer at a time: a process's writes wait their turn in memory (at
    # most this many, for at most this long, else 503 with Retry-After), and the one
    # whose turn it is waits this long for another process (worker, relay) to let go.
    sqlite_write_queue: int = Field(default=200, ge=1)
    sqlite_write_wait: Duration = timedelta(seconds=20)
    sqlite_busy_timeout: Duration = timedelta(seconds=20)
    # PostgreSQL: the connections each process keeps open, and how many more it may
    # open under load. Those are closed again once returned, and each costs a server
    # process and its setup: with 5 kept, 400 concurrent run requests opened ~280.
    database_pool_size: int = Field(default=15, ge=1)
    database_pool_overflow: int = Field(default=5, ge=0)

    # Notifications (relay/notifier.py). Links in them start with ``public_url`` (default:
    # http://host:port). Ended runs are read again this far back on every poll: a run's
    # end committed late (a slow transaction, another relay's clock) is still seen.
    public_url: str = ""
    notify_poll: Duration = timedelta(seconds=1)
    notify_lookback: Duration = timedelta(seconds=60)
    # Each delivery attempt gets this long; failed ones are tried again after
    # ``notify_backoff`` * 2^(n-1), ``notify_attempts`` times in all.
    notify_timeout: Duration = timedelta(seconds=10)
    notify_attempts: int = Field(default=5, ge=1)
    notify_backoff: Duration = timedelta(seconds=2)
    notify_in_flight: int = Field(default=20, ge=1)
    # E-mail targets need an SMTP server; without ``smtp_host`` their deliveries fail.
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "aegir@localhost"
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
