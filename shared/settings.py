"""Typed settings, read once from ``TRAYECTO_*`` environment variables.

Every process builds one :class:`Settings` at start-up and passes it down; nothing
else reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tracking_keys import parse_setting

ServiceName = Literal["ingest", "orchestrator", "delivery", "metrics"]
SERVICES: tuple[ServiceName, ...] = ("ingest", "orchestrator", "delivery", "metrics")
MIN_ADMIN_TOKEN_CHARS = 16
WRITE_KEY_PREFIXES = ("tk_", "gk_")
"""How write keys and Google Ads webhook keys start (see services/ingest/sources.py)."""
SECRET_SETTINGS = frozenset({"admin_token", "tracking_keys", "webhook_secret"})
"""Settings whose values are secrets as a whole (URLs may hold a password too)."""
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@\s/]*@")


def without_password(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``, anywhere in ``text``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def shown_value(setting: str, value: object) -> str:
    """A setting's value as it may be printed: secrets hidden, URL passwords masked."""
    if setting in SECRET_SETTINGS:
        return "(hidden)"
    return repr(without_password(str(value)))


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "trayecto"


def _default_stack_dir() -> Path:
    # PostgreSQL refuses to run as root, so as root its data directory is owned by the
    # `postgres` user; it must then live where that user can traverse the parents,
    # which is not the case under /root.
    if os.geteuid() == 0:
        return Path("/var/lib/trayecto/stack")
    return Path.home() / ".local" / "state" / "trayecto" / "stack"


def _default_content_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "content"


class Settings(BaseSettings):
    """Configuration of every Trayecto process (see the README's table)."""

    # hide_input_in_errors: a traceback must not print a bad value (it may be a secret).
    model_config = SettingsConfigDict(
        env_prefix="TRAYECTO_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port list"
    )
    database_url: str = Field(
        "postgresql://trayecto@127.0.0.1:55432/trayecto", description="PostgreSQL DSN"
    )
    smtp_url: str = Field("smtp://127.0.0.1:1025", description="SMTP server for email delivery")
    smtp_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Timeout of each SMTP command (connect, MAIL, DATA...)"
    )
    topic_partitions: int = Field(6, ge=1, le=1000, description="Partitions per prospect topic")
    topic_replication: int = Field(1, ge=1, le=7, description="Replication factor of topics")
    http_host: str = Field("127.0.0.1", description="Address the HTTP servers bind to")
    ingest_port: int = Field(8080, ge=1, le=65535)
    metrics_port: int = Field(8090, ge=1, le=65535)
    orchestrator_port: int = Field(8091, ge=1, le=65535)
    delivery_port: int = Field(8092, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    # Ingest.
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="Ingest base URL as prospects reach it (tracking links)",
    )
    tracking_keys: SecretStr = Field(
        SecretStr("dev-only-tracking-key-change-me"),
        description=(
            "Comma-separated HMAC keys for tracking links, KEY or 'KEY until YYYY-MM-DD'; "
            "the first signs, the others verify until the end of their grace period"
        ),
    )
    tracking_ttl_days: int = Field(180, ge=1, description="Validity of a tracking link")
    ingest_workers: int = Field(
        1, ge=1, le=64, description="Ingest worker processes (one per core on a dedicated host)"
    )
    ingest_dedupe_days: int = Field(7, ge=1, description="How long a messageId is remembered")
    ingest_rate_limit: float = Field(
        2000.0, gt=0, description="Default events/s per source and ingest replica (burst 2x)"
    )
    ingest_publish_timeout_s: float = Field(
        5.0, gt=0, description="Wait for Kafka's ack before answering 503"
    )
    ingest_max_future_s: int = Field(
        300, ge=0, description="Client timestamps further ahead are clamped to received_at"
    )
    form_thanks_url: str = Field(
        "", description="Where landing-page forms redirect; empty: ingest's own thank-you page"
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of ingest's admin API (/v1/admin, /v1/prospects); unset: off",
    )
    # Delivery.
    smtp_sender: str = Field(
        "Trayecto <hola@trayecto.localhost>", description="From address of every email"
    )
    content_dir: Path = Field(
        default_factory=_default_content_dir, description="Content catalogue and templates"
    )
    content_base_url: str = Field(
        "",
        description=(
            "Where the files content items name (pdf.file, video.file) are served from; "
            "empty: ingest's /content/files (TRAYECTO_CONTENT_DIR/files)"
        ),
    )
    delivery_max_attempts: int = Field(5, ge=1, le=50, description="Tries before dead-lettering")
    delivery_retry_base_s: float = Field(
        30.0, gt=0, description="First retry delay; doubles each attempt, with jitter"
    )
    delivery_rate_limits: str = Field(
        "email=20,webhook=10", description="Messages per second per channel, name=rate,..."
    )
    delivery_lease_s: float = Field(
        120.0, gt=0, description="A claim older than this belongs to a sender that died"
    )
    delivery_concurrency: int = Field(8, ge=1, le=256, description="Sends in flight per process")
    webhook_url: str = Field("", description="Where the webhook channel POSTs (empty: disabled)")
    webhook_secret: SecretStr = Field(
        SecretStr("dev-only-webhook-secret-change-me"), description="HMAC-SHA256 key of webhooks"
    )
    map_pain_negative_share: float = Field(
        0.3, gt=0, le=1, description="Journey map: negative feedback share that flags pain"
    )
    map_pain_dropoff_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Journey map: share of runs ending at a touchpoint that flags pain",
    )
    map_truth_min_difference: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Journey map: conversion gap (engaged vs not) of a moment of truth",
    )
    map_min_sample: int = Field(
        5, ge=1, description="Journey map: fewest prospects a pain or truth flag is judged on"
    )
    # Local stack (``trayecto stack``) only.
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    stack_dir: Path = Field(default_factory=_default_stack_dir)
    kafka_version: str = "4.1.1"
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    prometheus_port: int = Field(9090, ge=1, le=65535)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"postgresql", "postgres"}:
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("delivery_rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, rate = item.partition("=")
            try:
                ok = bool(sep and name.strip()) and 0 < float(rate) < math.inf
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"expected channel=messages_per_second[,...], got {item!r}")
        return value

    @field_validator("content_base_url")
    @classmethod
    def _check_content_base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if value.strip() and (parts.scheme not in {"http", "https"} or not parts.netloc):
            raise ValueError("must be empty or an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL, without ?query or #fragment")
        return value.strip()

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value().strip() if value is not None else ""
        if not token:
            return None  # an empty variable leaves the admin API off
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters (a random secret, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if token.startswith(WRITE_KEY_PREFIXES):
            raise ValueError("looks like a source's write key: the admin token is its own secret")
        return SecretStr(token)

    @field_validator("tracking_keys")
    @classmethod
    def _check_tracking_keys(cls, value: SecretStr) -> SecretStr:
        parse_setting(value.get_secret_value())  # its errors name the variable, never a key
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"smtp", "smtps"}:
            raise ValueError("must start with smtp:// or smtps://")
        return value

    @property
    def kafka_port(self) -> int:
        """Port of the first bootstrap server (the local stack's broker port)."""
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])

    @property
    def postgres_port(self) -> int:
        return urlsplit(self.database_url).port or 5432

    def rate_limits(self) -> dict[str, float]:
        """``delivery_rate_limits`` as channel → messages per second."""
        limits: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in self.delivery_rate_limits.split(","))):
            name, _, rate = item.partition("=")
            limits[name.strip()] = float(rate)
        return limits

    def service_port(self, service: ServiceName) -> int:
        ports: dict[ServiceName, int] = {
            "ingest": self.ingest_port,
            "orchestrator": self.orchestrator_port,
            "delivery": self.delivery_port,
            "metrics": self.metrics_port,
        }
        return ports[service]
