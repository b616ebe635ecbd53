"""Typed settings for every service, validated once at start.

Each service has one settings class assembled from shared sections (mixins). ``load_settings`` reads the
environment (plus a ``.env`` file in development and test only), validates everything, and raises a
single :class:`ConfigError` that lists every problem, each with the variable's name and what it should
hold. Switches that only make sense locally are refused in staging and production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import NetraError

REPO_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"

    @property
    def is_local(self) -> bool:
        return self in (Environment.DEVELOPMENT, Environment.TEST)


class ConfigError(NetraError):
    """Every configuration problem found at start, reported together."""

    def __init__(self, service: str, problems: list[str]) -> None:
        self.service = service
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{service}: invalid configuration ({len(problems)} problem(s)):\n{lines}")


def dev_only_switch(description: str) -> Any:
    """A boolean switch that start-up refuses in staging and production."""
    return Field(False, description=description, json_schema_extra={"dev_only": True})


def dev_only_switches(cls: type[BaseSettings]) -> list[str]:
    """The fields of ``cls`` declared with :func:`dev_only_switch`."""
    return [
        name
        for name, field in cls.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("dev_only")
    ]


class CommonSection(BaseSettings):
    """Base of every service's settings class: environment, project, logging, CORS, startup waits."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_file=None)

    netra_env: Environment = Field(
        Environment.DEVELOPMENT,
        description="one of development, test, staging, production",
    )
    service_name: str = Field("netra", description="the service's name in logs, e.g. auth")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("auto", description="json, text, or auto (text locally, json in the cloud)")
    google_cloud_project: str = Field("netra-local", description="the Google Cloud project id")
    allowed_origins: str = Field(
        "http://localhost:*,http://127.0.0.1:*",
        description="comma-separated front-end origins, e.g. https://app.staging.example.com "
        "(a :* port wildcard is accepted in development and test only)",
    )
    startup_wait_seconds: float = Field(
        10.0, gt=0, le=120, description="seconds a request waits for a starting dependency before 503"
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="largest accepted request body in bytes, e.g. 1048576")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in {"json", "text", "auto"}:
            raise ValueError("must be json, text or auto")
        return value

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    def cross_checks(self, env: Mapping[str, str]) -> list[str]:
        problems = []
        if not self.netra_env.is_local and any(o.endswith(":*") for o in self.origins):
            problems.append("ALLOWED_ORIGINS: port wildcards (:*) are for development only; list exact https origins")
        return problems


class DatabaseSection(BaseSettings):
    """Cloud SQL through the connector in the cloud, ``DATABASE_URL`` locally."""

    database_url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:port/dbname (local runs and tests)"
    )
    cloud_sql_instance: str | None = Field(
        None, description="Cloud SQL instance connection name project:region:instance"
    )
    cloud_sql_admin_endpoint: str | None = Field(
        None,
        description="Cloud SQL Admin API base URL for the connector; unset in the cloud (Google's), "
        "set only to run against the local stand-in (emulators/cloudsql.py)",
    )
    db_name: str = Field("netra", description="database name when using CLOUD_SQL_INSTANCE")
    db_user: str = Field("netra", description="database user (the IAM service account email with DB_IAM_AUTH)")
    db_password: SecretStr | None = Field(None, description="database password (omit with DB_IAM_AUTH=true)")
    db_iam_auth: bool = Field(False, description="true to log in with IAM database authentication")
    db_ip_type: str = Field("private", description="public, private or psc")
    db_pool_size: int = Field(5, ge=1, le=100, description="connections kept per instance, 1-100")
    db_statement_timeout_ms: int = Field(15_000, ge=100, description="statement timeout in ms, e.g. 15000")
    db_connect_timeout_s: float = Field(5.0, gt=0, le=60, description="connect timeout in seconds, e.g. 5")
    db_connect_budget_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="seconds a new connection is retried (jittered backoff) before the caller gets a 503, e.g. 10",
    )

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parsed = urlparse(value.get_secret_value())
        if parsed.scheme not in {"postgresql", "postgres", "postgresql+pg8000"} or not parsed.path.strip("/"):
            # Never echo the value: it may hold a password.
            raise ValueError("must look like postgresql://user:password@host:port/dbname")
        return value

    @field_validator("cloud_sql_instance")
    @classmethod
    def _instance(cls, value: str | None) -> str | None:
        if value and len(value.split(":")) != 3:
            raise ValueError("must be project:region:instance")
        return value or None

    @field_validator("db_ip_type")
    @classmethod
    def _ip_type(cls, value: str) -> str:
        if value.lower() not in {"public", "private", "psc"}:
            raise ValueError("must be public, private or psc")
        return value.lower()

    def cross_checks(self, env: Mapping[str, str]) -> list[str]:
        if not env.get("DATABASE_URL") and not env.get("CLOUD_SQL_INSTANCE"):
            return [
                "DATABASE_URL or CLOUD_SQL_INSTANCE: one is required "
                "(postgresql://user:password@host:port/dbname, or project:region:instance)"
            ]
        return []


class TokenVerifySection(BaseSettings):
    """How a service verifies access tokens issued by auth (public keys only)."""

    auth_issuer: str = Field("netra-auth", description="the iss claim auth puts in tokens, normally its public URL")
    token_audience: str = Field("netra-apex", description="the aud claim every service expects")
    auth_jwks_url: str | None = Field(
        None,
        description="URL of auth's /.well-known/jwks.json; locally found via .service_discovery when unset",
    )
    jwks_refresh_min_interval_s: float = Field(
        30.0, ge=0, description="least seconds between two key set fetches on an unknown kid"
    )

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks(cls, value: str | None) -> str | None:
        if value and urlparse(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http(s) URL, e.g. https://auth.example.com/.well-known/jwks.json")
        return value or None


S = TypeVar("S", bound=BaseSettings)


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def effective_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment, plus ``.env`` values in development and test only."""
    env = dict(os.environ if environ is None else environ)
    if (env.get("NETRA_ENV") or "development") in ("development", "test"):
        for key, value in _dotenv(Path(env.get("NETRA_DOTENV", REPO_ROOT / ".env"))).items():
            env.setdefault(key, value)
    return {k.upper(): v for k, v in env.items()}


def _field_problem(cls: type[BaseSettings], loc: tuple[Any, ...], msg: str) -> str:
    name = str(loc[0]) if loc else "?"
    field = cls.model_fields.get(name)
    hint = f" (expected: {field.description})" if field is not None and field.description else ""
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{name.upper()}: {msg}{hint}"


def _dev_only_problems(cls: type[BaseSettings], settings: BaseSettings | None, env: Mapping[str, str]) -> list[str]:
    """Every development-only switch that is on, judged by its PARSED value: pydantic reads "t", "y", "on",
    "1", " TRUE " and more as true, so comparing the raw string with a list of spellings lets some through."""
    problems = []
    for name in dev_only_switches(cls):
        if settings is not None:
            on = bool(getattr(settings, name))
        else:
            # Other fields failed validation: parse this one on its own, the same way pydantic would.
            raw = env.get(name.upper())
            try:
                on = raw is not None and bool(TypeAdapter(cls.model_fields[name].annotation).validate_python(raw))
            except ValidationError:
                on = False  # malformed: already reported as that field's validation problem
        if on:
            problems.append(f"{name.upper()}: is a development-only switch and must be off in staging and production")
    return problems


def load_settings(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build ``cls`` from the environment, or raise ConfigError listing every problem."""
    env = effective_env(environ)
    problems: list[str] = []
    settings: S | None = None
    # Validate from an explicit mapping so tests and the .env rule see the same values.
    known = {k: v for k, v in env.items() if k.lower() in cls.model_fields}
    try:
        settings = cls.model_validate({k.lower(): v for k, v in known.items()})
    except ValidationError as exc:
        for err in exc.errors(include_input=False):
            problems.append(_field_problem(cls, tuple(err["loc"]), err["msg"]))
    environment = (env.get("NETRA_ENV") or "development").lower()
    if environment in ("staging", "production"):
        problems += _dev_only_problems(cls, settings, env)
    for base in cls.__mro__:
        check = base.__dict__.get("cross_checks")
        if check is None:
            continue
        if settings is not None:
            problems += check(settings, env)
        elif base is not CommonSection:
            # Checks that only read the raw environment still run when fields failed.
            try:
                problems += check(cls.model_construct(), env)
            except Exception:  # noqa: S112 - a check needing valid fields just waits for them
                continue
    if problems:
        service = env.get("SERVICE_NAME", cls.__name__)
        raise ConfigError(service, sorted(set(problems), key=problems.index))
    assert settings is not None
    return settings
