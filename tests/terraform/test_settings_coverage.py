"""Terraform gives every workload the environment its code reads, under the same names.

The names come from the code: each workload's settings classes (shared/config.py sections composed in
functions/<svc>/settings.py; env var = field name upper-cased) plus every literal os.environ / getenv /
env_secret read in the files its entry point can import. Terraform's side is local.service_env and
local.secret_env in terraform/modules/platform/settings.tf.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from functools import cache
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.config import CommonSection, ConfigError, DatabaseSection, TokenVerifySection, load_settings
from tests.terraform.hcl import environment_reads, import_closure, module_file, platform, render

# Workload => groups of alternatives; the first alternative that imports is used for each group.
# "module" means the one settings class defined in that module; "module:Class" names it.
SETTINGS: dict[str, list[list[str]]] = {
    "auth": [["functions.auth.settings", "fallback:auth"]],
    "agent-api": [["functions.agent.settings:AgentSettings"]],
    "agent-worker": [["functions.agent.settings:AgentSettings"]],
    "ws-bridge": [["functions.ws_bridge.settings", "fallback:ws-bridge"]],
    "migrate": [["shared.db.migrate:MigrateSettings"], ["shared.deploy.db_grants:GrantSettings"]],
    "rollup": [["functions.agent.rollup_job", "functions.agent.settings:AgentSettings"]],
}


class _AuthFallback(CommonSection, DatabaseSection):
    """Until functions/auth/settings.py exists: the shared sections auth is known to compose."""


class _WsBridgeFallback(CommonSection, DatabaseSection, TokenVerifySection):
    """Until functions/ws_bridge/settings.py exists: the shared sections ws_bridge is known to compose."""


FALLBACKS: dict[str, type[BaseSettings]] = {"auth": _AuthFallback, "ws-bridge": _WsBridgeFallback}

# Read with a default by the code, deliberately not set by Terraform.
OPTIONAL_UNSET = {
    "K_SERVICE": "set by Cloud Run itself",
    "K_REVISION": "set by Cloud Run itself",
    "K_CONFIGURATION": "set by Cloud Run itself",
    "PORT": "set by Cloud Run itself",
    "FUNCTION_TARGET": "set by Cloud Functions / functions-framework",
    "HOST": "ws_bridge listen address: the container command passes --host 0.0.0.0 instead",
    "NETRA_LOCAL_DIR": "local state directory, local runs only",
    "CLOUD_RUN_JOB": "set by Cloud Run jobs",
    "CLOUD_RUN_EXECUTION": "set by Cloud Run jobs",
    "CLOUD_RUN_TASK_INDEX": "set by Cloud Run jobs",
    "FIRESTORE_EMULATOR_HOST": "local emulator only",
    "PUBSUB_EMULATOR_HOST": "local emulator only",
    "SECRET_MANAGER_EMULATOR_HOST": "local emulator only",
    "CLOUD_RUN_API_HOST": "tests of the deploy helper only",
    "CLOUD_MONITORING_API_HOST": "tests of the release gate only",
    "NETRA_DISCOVERY_DIR": "local discovery files only",
    "NETRA_DOTENV": ".env file, development and test only",
    "DATABASE_URL": "local alternative to CLOUD_SQL_INSTANCE",
    "CLOUD_SQL_ADMIN_ENDPOINT": "local Cloud SQL stand-in only (emulators/cloudsql.py)",
    "GOOGLE_APPLICATION_CREDENTIALS": "an operator's key file for a local release run; jobs use their identity",
}

# Sample values for the Terraform expressions used in settings.tf (staging; production swaps the env).
PROJECT = "netra-staging"


def samples(environment: str) -> tuple[dict[str, str], list[tuple[re.Pattern[str], str]]]:
    suffix = "staging.example.com" if environment == "staging" else "example.com"
    values = {
        "var.environment": environment,
        "var.log_level": "INFO",
        "var.project_id": PROJECT,
        "google_sql_database_instance.main.connection_name": f"{PROJECT}:europe-west1:netra-pg-a1b2c3",
        "google_sql_database.netra.name": "netra",
        "local.db_migrate_user": "netra_migrator",
        "tostring(var.db_pool_size)": "4",
        "var.firestore_collection_prefix": "",
        'join(",", values(local.db_iam_users))': f"netra-auth@{PROJECT}.iam,netra-agent-api@{PROJECT}.iam",
        "var.llm_models": "gemini:gemini-2.5-flash,openai:gpt-4o-mini",
        "tostring(var.gemini_vertex)": "false",
        "var.gemini_location": "us-central1",
        'tostring(local.function_sizing["agent-worker"].concurrency)': "4",
        "tostring(local.trusted_proxy_hops.auth)": str(platform()["locals"]["trusted_proxy_hops"]["auth"]),
    }
    patterns = [
        (re.compile(r"local\.urls\.(\w+)"), rf"https://\1.{suffix}"),
        (re.compile(r'local\.db_iam_users\["([\w-]+)"\]'), rf"netra-\1@{PROJECT}.iam"),
        (re.compile(r'lookup\(local\.oauth_client_ids, "(\w+)", ""\)'), r"client-id-of-\1"),
        (re.compile(r'local\.secret_resource\["([\w-]+)"\]'), rf"projects/{PROJECT}/secrets/netra-\1"),
    ]
    return values, patterns


def _resolve(spec: str) -> type[BaseSettings] | None:
    if spec.startswith("fallback:"):
        return FALLBACKS[spec.split(":", 1)[1]]
    module_name, _, class_name = spec.partition(":")
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # the module itself is not written yet
        raise
    if class_name:
        return getattr(mod, class_name)
    found = [
        c
        for _, c in inspect.getmembers(mod, inspect.isclass)
        if issubclass(c, BaseSettings) and c.__module__ == mod.__name__ and issubclass(c, CommonSection)
    ]
    if len(found) != 1:
        return None
    return found[0]


@cache
def settings_classes(workload: str) -> tuple[type[BaseSettings], ...]:
    classes = []
    for group in SETTINGS[workload]:
        for spec in group:
            cls = _resolve(spec)
            if cls is not None:
                classes.append(cls)
                break
        else:
            raise AssertionError(f"{workload}: none of {group} can be imported")
    return tuple(classes)


def env_name(name: str, field: Any) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return (alias or name).upper()


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def fields(workload: str) -> dict[str, tuple[bool, bool]]:
    """Env var => (required, secret) over the workload's settings classes."""
    out: dict[str, tuple[bool, bool]] = {}
    for cls in settings_classes(workload):
        for name, field in cls.model_fields.items():
            key = env_name(name, field)
            required, secret = out.get(key, (False, False))
            out[key] = (required or field.is_required(), secret or _is_secret(field.annotation))
    return out


def entry_modules(workload: str) -> list[str]:
    locals_ = platform()["locals"]
    if workload in locals_["functions"]:
        return [locals_["functions"][workload]["module"]]
    command = " ".join(locals_["containers"][workload])
    modules = re.findall(r"-m ([\w.]+)", command)
    # `python -m package` runs package/__main__.py.
    return modules + [f"{m}.__main__" for m in modules if module_file(f"{m}.__main__") is not None]


@cache
def code_reads(workload: str) -> dict[str, list[tuple[str, bool]]]:
    paths = import_closure(entry_modules(workload) + ["shared.config"])
    return environment_reads(paths)


def tf_env(workload: str) -> dict[str, Any]:
    return platform()["locals"]["service_env"][workload]


def tf_secrets(workload: str) -> dict[str, str]:
    return platform()["locals"]["secret_env"][workload]


WORKLOADS = sorted(SETTINGS)


def test_terraform_configures_exactly_the_known_workloads() -> None:
    locals_ = platform()["locals"]
    assert set(locals_["service_env"]) == set(SETTINGS) == set(locals_["secret_env"]) == set(locals_["workloads"])
    assert set(locals_["functions"]) | set(locals_["containers"]) == set(SETTINGS)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_required_setting_is_provided(workload: str) -> None:
    """Scenario 24: a required variable missing in the cloud would stop every instance at start."""
    provided = set(tf_env(workload)) | set(tf_secrets(workload))
    missing = [k for k, (required, _) in fields(workload).items() if required and k not in provided]
    required_reads = [k for k, uses in code_reads(workload).items() if any(req for _, req in uses)]
    missing += [k for k in required_reads if k not in provided and k not in OPTIONAL_UNSET]
    classes = ", ".join(c.__qualname__ for c in settings_classes(workload))
    print(f"{workload}: settings {classes}; provides {len(provided)} variables")
    assert not missing, f"{workload}: Terraform does not provide {sorted(set(missing))}"


@pytest.mark.parametrize("workload", WORKLOADS)
def test_secrets_only_come_from_secret_manager(workload: str) -> None:
    secret_fields = {k for k, (_, secret) in fields(workload).items() if secret}
    plain = sorted(secret_fields & set(tf_env(workload)) - {"DATABASE_URL"})
    assert not plain, f"{workload}: secret settings {plain} must be Secret Manager references, not plain values"
    assert "DATABASE_URL" not in tf_env(workload), "the cloud uses CLOUD_SQL_INSTANCE; a URL would carry a password"
    known = set(platform()["locals"]["secrets"])
    for env, key in tf_secrets(workload).items():
        assert key in known, f"{workload}: {env} refers to undeclared secret {key!r}"
        assert env in secret_fields or env in code_reads(workload), f"{workload}: nothing reads secret env {env}"


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_variable_terraform_sets_is_read_by_the_code(workload: str) -> None:
    """A name the code does not read is a typo or a leftover: it would silently configure nothing."""
    known = set(fields(workload)) | set(code_reads(workload))
    unknown = sorted((set(tf_env(workload)) | set(tf_secrets(workload))) - known)
    assert not unknown, f"{workload}: Terraform sets {unknown}, which no settings class or code of it reads"


@pytest.mark.parametrize("workload", WORKLOADS)
def test_optional_reads_are_set_or_deliberately_unset(workload: str) -> None:
    provided = set(tf_env(workload)) | set(tf_secrets(workload)) | set(fields(workload))
    unexplained = {k: uses for k, uses in code_reads(workload).items() if k not in provided and k not in OPTIONAL_UNSET}
    assert not unexplained, (
        f"{workload}: the code reads {sorted(unexplained)} (in {unexplained}); set them in "
        "settings.tf or add them to OPTIONAL_UNSET with the reason"
    )


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_terraform_environment_validates(workload: str, environment: str) -> None:
    """Scenarios 24, 25, 27: the settings Terraform gives pass load_settings in staging and production
    (forms of URLs, numbers and instance names; no development-only switch; no port wildcards)."""
    values, patterns = samples(environment)
    env = {k: render(v, values, patterns) for k, v in tf_env(workload).items()}
    env = {k: v for k, v in env.items() if v != ""}  # the modules drop empty values
    assert env["NETRA_ENV"] == environment
    secrets = set(tf_secrets(workload))
    env.update({k: "sample-secret-value" for k in secrets})
    for cls in settings_classes(workload):
        try:
            load_settings(cls, env)
        except ConfigError as exc:
            # Secret values are samples here; their form is the operator's job (docs/DEPLOY.md).
            problems = [p for p in exc.problems if p.split(":", 1)[0] not in secrets]
            assert not problems, f"{workload} ({cls.__qualname__}, {environment}):\n" + "\n".join(problems)


def test_every_sign_in_secret_comes_with_its_client_id() -> None:
    """A provider's client secret is useless without its client id (sign-in is on only when the id is set): auth
    gets both for every provider Terraform can turn on, the id from the providers turned on only."""
    env, secrets = tf_env("auth"), tf_secrets("auth")
    for provider in ("google", "github"):
        prefix = provider.upper()
        assert f"{prefix}_CLIENT_SECRET" in secrets, provider
        assert env.get(f"{prefix}_CLIENT_ID") == f'${{lookup(local.oauth_client_ids, "{provider}", "")}}', provider
    only_on = "${{for p in var.sign_in_providers : p => var.oauth_client_ids[p]}}"
    assert platform()["locals"]["oauth_client_ids"] == only_on
