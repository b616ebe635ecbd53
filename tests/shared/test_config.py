"""Configuration is validated once, at start, and every problem is reported together."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr

from shared.config import (
    CommonSection,
    ConfigError,
    DatabaseSection,
    TokenVerifySection,
    dev_only_switch,
    dev_only_switches,
    effective_env,
    load_settings,
)


class ExampleSettings(CommonSection, DatabaseSection, TokenVerifySection):
    llm_api_key: SecretStr = Field(description="API key of the LLM provider, e.g. sk-...")
    worker_count: int = Field(description="number of workers, a whole number such as 4")
    dev_login_enabled: bool = dev_only_switch("true to allow POST /auth/dev/login")
    ws_allow_query_token: bool = dev_only_switch("true to accept ?token= on the WebSocket")


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(ExampleSettings, env)
    return info.value.problems


def test_scenario_24_all_missing_variables_reported_together() -> None:
    """Scenario 24: several required variables missing -> one error listing all, with what each holds."""
    problems = problems_of({"NETRA_ENV": "test"})
    text = "\n".join(problems)
    assert any(p.startswith("LLM_API_KEY:") and "API key of the LLM provider" in p for p in problems)
    assert any(p.startswith("WORKER_COUNT:") and "whole number" in p for p in problems)
    assert "DATABASE_URL or CLOUD_SQL_INSTANCE" in text
    assert len(problems) == 3


def test_scenario_25_malformed_values_name_variable_and_expected_form() -> None:
    """Scenario 25: malformed URL, number, key -> the error names the variable and the expected form."""
    secret_pw = "hunter2-very-secret"
    problems = problems_of(
        {
            "NETRA_ENV": "test",
            "LLM_API_KEY": "k",
            "WORKER_COUNT": "four",
            "DATABASE_URL": f"mysql://u:{secret_pw}@h/db",
            "AUTH_JWKS_URL": "not a url",
            "DB_POOL_SIZE": "1000",
            "CLOUD_SQL_INSTANCE": "just-a-name",
        }
    )
    by_var = {p.split(":", 1)[0]: p for p in problems}
    assert "whole number" in by_var["WORKER_COUNT"]
    assert "postgresql://user:password@host:port/dbname" in by_var["DATABASE_URL"]
    assert "http(s) URL" in by_var["AUTH_JWKS_URL"]
    assert "1-100" in by_var["DB_POOL_SIZE"]
    assert "project:region:instance" in by_var["CLOUD_SQL_INSTANCE"]
    assert secret_pw not in "\n".join(problems), "a malformed secret value must never be echoed"


def test_scenario_27_dev_only_switches_refused_in_staging_and_production() -> None:
    """Scenario 27: dev login or tokens in query strings on in staging/production -> start-up refuses."""
    base = {
        "LLM_API_KEY": "k",
        "WORKER_COUNT": "2",
        "DATABASE_URL": "postgresql://u:p@h:5432/d",
        "ALLOWED_ORIGINS": "https://app.staging.example.com",
    }
    for env_name in ("staging", "production"):
        problems = problems_of(
            {**base, "NETRA_ENV": env_name, "DEV_LOGIN_ENABLED": "true", "WS_ALLOW_QUERY_TOKEN": "1"}
        )
        assert any(p.startswith("DEV_LOGIN_ENABLED:") and "development-only" in p for p in problems)
        assert any(p.startswith("WS_ALLOW_QUERY_TOKEN:") for p in problems)
    # The same switches are fine locally, and off is fine anywhere.
    assert (
        load_settings(
            ExampleSettings, {**base, "NETRA_ENV": "development", "DEV_LOGIN_ENABLED": "true"}
        ).dev_login_enabled
        is True
    )
    assert load_settings(ExampleSettings, {**base, "NETRA_ENV": "production"}).dev_login_enabled is False


# Every development-only switch of every service, named here by hand (not read from the classes): a switch
# declared as a plain setting by mistake is then still expected to be refused, and the test fails.
REAL_DEV_ONLY_SWITCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    "auth": ("functions.auth.settings:AuthSettings", ("DEV_LOGIN_ENABLED",)),
    "agent": ("functions.agent.settings:AgentSettings", ()),
    "ws_bridge": ("functions.ws_bridge.settings:BridgeSettings", ("WS_ALLOW_QUERY_TOKEN",)),
}

# What each real class needs to load in staging/production with every switch off.
REAL_BASE_ENV = {
    "DATABASE_URL": "postgresql://u:p@h:5432/d",
    "ALLOWED_ORIGINS": "https://app.staging.example.com",
    "AUTH_PUBLIC_URL": "https://auth.staging.example.com",
    "TOKEN_KEYSET_SECRET": "projects/p/secrets/auth-signing-keys",
}

# Spellings pydantic reads as true for a bool (checked below against pydantic itself, so the list cannot
# hold a spelling pydantic would refuse): the old guard compared the raw string with 1/true/yes/on only.
TRUE_SPELLINGS = ("1", "true", "yes", "on", "t", "y", "T", "Y", "TRUE", "True", "YES", "On", "ON", "tRuE")


def _real_class(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def test_true_spellings_are_what_pydantic_reads_as_true() -> None:
    from pydantic import TypeAdapter

    assert all(TypeAdapter(bool).validate_python(raw) is True for raw in TRUE_SPELLINGS)


@pytest.mark.parametrize("service", sorted(REAL_DEV_ONLY_SWITCHES))
def test_scenario_27_real_settings_refuse_each_dev_only_switch(service: str) -> None:
    """Scenario 27, on each service's REAL settings class: every development-only switch, in every spelling
    pydantic reads as true, is refused in staging and production; off (or any spelling locally) loads."""
    path, switches = REAL_DEV_ONLY_SWITCHES[service]
    cls = _real_class(path)
    assert sorted(dev_only_switches(cls)) == sorted(s.lower() for s in switches), (
        f"{service}: development-only switches changed; list them in REAL_DEV_ONLY_SWITCHES"
    )
    for env_name in ("staging", "production"):
        assert load_settings(cls, {**REAL_BASE_ENV, "NETRA_ENV": env_name}) is not None
        for switch in switches:
            for raw in TRUE_SPELLINGS:
                with pytest.raises(ConfigError) as info:
                    load_settings(cls, {**REAL_BASE_ENV, "NETRA_ENV": env_name, switch: raw})
                assert any(p.startswith(f"{switch}:") and "development-only" in p for p in info.value.problems), (
                    f"{service} {env_name} {switch}={raw!r}: {info.value.problems}"
                )
            # A switch that is on is refused even when another field fails validation at the same time.
            with pytest.raises(ConfigError) as info:
                load_settings(cls, {**REAL_BASE_ENV, "NETRA_ENV": env_name, switch: "t", "DB_POOL_SIZE": "x"})
            assert any(p.startswith(f"{switch}:") and "development-only" in p for p in info.value.problems)
            # Off in any spelling is fine.
            for raw in ("0", "false", "f", "n", "off"):
                assert (
                    getattr(load_settings(cls, {**REAL_BASE_ENV, "NETRA_ENV": env_name, switch: raw}), switch.lower())
                    is False
                )
    for switch in switches:
        local = load_settings(cls, {**REAL_BASE_ENV, "NETRA_ENV": "development", switch: "t"})
        assert getattr(local, switch.lower()) is True


def test_wildcard_origins_refused_outside_development() -> None:
    base = {"LLM_API_KEY": "k", "WORKER_COUNT": "2", "DATABASE_URL": "postgresql://u:p@h:5432/d"}
    problems = problems_of({**base, "NETRA_ENV": "staging", "ALLOWED_ORIGINS": "http://localhost:*"})
    assert any(p.startswith("ALLOWED_ORIGINS:") for p in problems)


def test_secret_values_are_masked_in_repr() -> None:
    settings = load_settings(
        ExampleSettings,
        {
            "NETRA_ENV": "test",
            "LLM_API_KEY": "sk-live-123456",
            "WORKER_COUNT": "1",
            "DATABASE_URL": "postgresql://u:pw-789@h:5432/d",
        },
    )
    assert "sk-live-123456" not in repr(settings)
    assert "pw-789" not in repr(settings)
    assert settings.llm_api_key.get_secret_value() == "sk-live-123456"


def test_dotenv_read_only_locally(tmp_path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("LLM_API_KEY=from-dotenv\nWORKER_COUNT=3\nDATABASE_URL=postgresql://u:p@h:5432/d\n")
    local = load_settings(ExampleSettings, {"NETRA_ENV": "development", "NETRA_DOTENV": str(dotenv)})
    assert local.worker_count == 3
    problems = problems_of(
        {"NETRA_ENV": "production", "NETRA_DOTENV": str(dotenv), "ALLOWED_ORIGINS": "https://app.example.com"}
    )
    assert any(p.startswith("WORKER_COUNT:") for p in problems), ".env must be ignored in production"


# Each number's documented range, written out here (not read from the classes): a bound moved in the code is
# then a failing test, not a silently different range. (variable, refused values, accepted values)
NUMBER_RANGES = [
    ("STARTUP_WAIT_SECONDS", ("0", "120.5"), ("0.5", "120")),
    ("MAX_BODY_BYTES", ("0",), ("1",)),
    ("DB_POOL_SIZE", ("0", "101"), ("1", "100")),
    ("DB_STATEMENT_TIMEOUT_MS", ("99",), ("100",)),
    ("DB_CONNECT_TIMEOUT_S", ("0", "60.5"), ("0.5", "60")),
    ("DB_CONNECT_BUDGET_S", ("0", "120.5"), ("0.5", "120")),
    ("JWKS_REFRESH_MIN_INTERVAL_S", ("-0.5",), ("0",)),
]


@pytest.mark.parametrize(("variable", "refused", "accepted"), NUMBER_RANGES)
def test_scenario_25_numbers_outside_their_range_are_refused_by_name(
    variable: str, refused: tuple[str, ...], accepted: tuple[str, ...]
) -> None:
    """Scenario 25: a number outside its range is refused with the variable's name; each bound itself is
    accepted or refused as documented."""
    base = {"NETRA_ENV": "test", "LLM_API_KEY": "k", "WORKER_COUNT": "1", "DATABASE_URL": "postgresql://u:p@h/d"}
    for raw in refused:
        assert any(p.startswith(f"{variable}:") for p in problems_of({**base, variable: raw})), (variable, raw)
    for raw in accepted:
        settings = load_settings(ExampleSettings, {**base, variable: raw})
        assert getattr(settings, variable.lower()) == float(raw), (variable, raw)


def test_dotenv_comments_blank_and_malformed_lines_are_skipped(tmp_path) -> None:
    """A .env file's comments, blank lines and lines without '=' are skipped, and the lines after them read."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# COMMENTED=1\n\nGARBAGE\n#WORKER_COUNT=9\nLLM_API_KEY='quoted'\nWORKER_COUNT=3\n"
        'DATABASE_URL="postgresql://u:p@h:5432/d"\n'
    )
    env = effective_env({"NETRA_ENV": "test", "NETRA_DOTENV": str(dotenv)})
    assert {k for k in env if k not in ("NETRA_ENV", "NETRA_DOTENV")} == {"LLM_API_KEY", "WORKER_COUNT", "DATABASE_URL"}
    settings = load_settings(ExampleSettings, {"NETRA_ENV": "test", "NETRA_DOTENV": str(dotenv)})
    assert (settings.worker_count, settings.llm_api_key.get_secret_value()) == (3, "quoted")
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:p@h:5432/d"


def test_a_problem_names_the_expected_form_only_when_the_field_describes_it() -> None:
    """The hint ``(expected: ...)`` comes from the field's description; a field without one gets no hint
    rather than ``(expected: None)``."""

    class Undescribed(CommonSection):
        count: int = Field()

    with pytest.raises(ConfigError) as info:
        load_settings(Undescribed, {"NETRA_ENV": "test", "COUNT": "many"})
    (problem,) = info.value.problems
    assert problem.startswith("COUNT:") and "expected" not in problem, problem


def test_a_check_that_needs_valid_fields_does_not_hide_the_checks_after_it() -> None:
    """When fields fail validation, a class's own cross-check that needs them is passed over, and the checks of
    the sections after it in the class hierarchy still run: DATABASE_URL's absence is reported together with the
    malformed number (scenario 24: every problem in one error)."""

    class Checked(CommonSection, DatabaseSection):
        worker_count: int = Field(description="number of workers, a whole number such as 4")

        def cross_checks(self, env: object) -> list[str]:
            return [] if self.worker_count > 0 else ["WORKER_COUNT: must be positive"]

    with pytest.raises(ConfigError) as info:
        load_settings(Checked, {"NETRA_ENV": "test", "WORKER_COUNT": "four"})
    text = "\n".join(info.value.problems)
    assert "WORKER_COUNT:" in text and "DATABASE_URL or CLOUD_SQL_INSTANCE" in text, text


def test_scenario_25_words_outside_their_set_are_refused_by_name() -> None:
    """Scenario 25: LOG_LEVEL, LOG_FORMAT and DB_IP_TYPE take one word of a fixed set; another word is refused
    with the variable's name and the choices, and the accepted spellings are normalised."""
    base = {"NETRA_ENV": "test", "LLM_API_KEY": "k", "WORKER_COUNT": "1", "DATABASE_URL": "postgresql://u:p@h/d"}
    problems = problems_of({**base, "LOG_LEVEL": "loud", "LOG_FORMAT": "xml", "DB_IP_TYPE": "ipv6"})
    by_var = {p.split(":", 1)[0]: p for p in problems}
    # The validator's own words follow the name (pydantic's "Value error, " prefix is dropped).
    assert by_var["LOG_LEVEL"].startswith("LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR")
    assert by_var["LOG_FORMAT"].startswith("LOG_FORMAT: must be json, text or auto")
    assert by_var["DB_IP_TYPE"].startswith("DB_IP_TYPE: must be public, private or psc")
    settings = load_settings(ExampleSettings, {**base, "LOG_LEVEL": "debug", "LOG_FORMAT": "json", "DB_IP_TYPE": "PSC"})
    assert (settings.log_level, settings.log_format, settings.db_ip_type) == ("DEBUG", "json", "psc")


def test_scenario_25_cloud_sql_instance_is_three_parts() -> None:
    """Scenario 25: CLOUD_SQL_INSTANCE is project:region:instance, exactly three parts; a valid one is kept."""
    base = {"NETRA_ENV": "test", "LLM_API_KEY": "k", "WORKER_COUNT": "1"}
    for raw in ("project:region", "a:b:c:d"):
        assert any(p.startswith("CLOUD_SQL_INSTANCE:") for p in problems_of({**base, "CLOUD_SQL_INSTANCE": raw})), raw
    settings = load_settings(ExampleSettings, {**base, "CLOUD_SQL_INSTANCE": "proj:europe-west1:main"})
    assert settings.cloud_sql_instance == "proj:europe-west1:main"


def test_scenario_25_auth_jwks_url_must_be_http_and_is_kept() -> None:
    """Scenario 25: AUTH_JWKS_URL must be an http(s) URL; a valid one is kept as given."""
    base = {"NETRA_ENV": "test", "LLM_API_KEY": "k", "WORKER_COUNT": "1", "DATABASE_URL": "postgresql://u:p@h/d"}
    assert any(p.startswith("AUTH_JWKS_URL:") for p in problems_of({**base, "AUTH_JWKS_URL": "ftp://h/jwks.json"}))
    url = "https://auth.example.com/.well-known/jwks.json"
    assert load_settings(ExampleSettings, {**base, "AUTH_JWKS_URL": url}).auth_jwks_url == url


def test_scenario_27_switch_judged_on_its_own_value_when_other_fields_fail() -> None:
    """Scenario 27: in production, with another field malformed (so the settings cannot be built), each
    development-only switch is still judged by its own value: on is refused, off is not, and a malformed value
    is reported once, as malformed, not also as a switch that is on."""
    base = {
        "NETRA_ENV": "production",
        "LLM_API_KEY": "k",
        "WORKER_COUNT": "four",  # malformed: the fallback path
        "DATABASE_URL": "postgresql://u:p@h:5432/d",
        "ALLOWED_ORIGINS": "https://app.example.com",
    }

    def switch_problems(raw: str) -> list[str]:
        return [p for p in problems_of({**base, "DEV_LOGIN_ENABLED": raw}) if p.startswith("DEV_LOGIN_ENABLED:")]

    assert [("development-only" in p) for p in switch_problems("yes")] == [True]
    assert switch_problems("false") == []
    (malformed,) = switch_problems("maybe")
    assert "development-only" not in malformed, malformed
