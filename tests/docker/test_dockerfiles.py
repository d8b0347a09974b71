"""The two images, read (not built: no Docker engine here): base images pinned, the hub's image
built from the wheel in a first stage and installed in a slim runtime, both ending as a non-root
user, a HEALTHCHECK in the hub's image, and every COPY naming a file that exists. The wheel itself
is built once to show it carries the canonical schemas the image relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
NAMES = ["Dockerfile", "airflow.Dockerfile"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = (DOCKER / name).read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages(name: str) -> list[list[tuple[str, str]]]:
    """The build stages, each a list of instructions starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(name):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


@pytest.mark.parametrize("name", NAMES)
def test_base_images_pinned(name: str) -> None:
    for stage in stages(name):
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
        assert "latest" not in image


@pytest.mark.parametrize("name", NAMES)
def test_ends_as_a_non_root_user(name: str) -> None:
    final = stages(name)[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, f"{name}: the final stage never sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # nothing runs as root after the last USER
    last = max(i for i, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "USER" for keyword, _ in final[last + 1 :])


@pytest.mark.parametrize("name", NAMES)
def test_the_wheel_is_built_then_installed(name: str) -> None:
    build, *_, runtime = stages(name)
    assert build[0][1].endswith(" AS build")
    assert ("RUN", "pip wheel --no-deps --wheel-dir /dist .") in build
    assert any(k == "COPY" and r.startswith("--from=build /dist/") for k, r in runtime)
    installs = [r for k, r in runtime if k == "RUN" and "pip install" in r]
    assert len(installs) == 1
    assert "conveyor_hub-*.whl" in installs[0]
    # the runtime stage has no source tree of the engine: only the wheel brings it
    copies = [r for k, r in runtime if k == "COPY"]
    assert not any(
        re.match(r"(--\S+ )*(conveyor|connectors|simulators|schemas) ", c) for c in copies
    )


def test_hub_image() -> None:
    runtime = stages("Dockerfile")[-1]
    assert runtime[0][1].startswith("python:3.12-slim")
    healthchecks = [r for k, r in runtime if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/usr/local/bin/conveyor-healthcheck" in healthchecks[0]
    assert ("COPY", "docker/healthcheck.py /usr/local/bin/conveyor-healthcheck") in runtime
    assert ("ENTRYPOINT", '["conveyor"]') in runtime
    assert ("ENV", "CONVEYOR_PROJECT=/opt/conveyor") in runtime
    schema_check = [r for k, r in runtime if k == "RUN" and "schemas_dir" in r]
    assert schema_check
    assert "envelope.json" in schema_check[0]


def test_airflow_image() -> None:
    runtime = stages("airflow.Dockerfile")[-1]
    assert re.fullmatch(r"apache/airflow:3\.3\.\d+-python3\.\d+", runtime[0][1])
    (install,) = [r for k, r in runtime if k == "RUN" and "pip install" in r]
    # the image's own Airflow stays; the wheel comes with its airflow extra (provider, plugin)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install
    assert '"${WHEEL}[airflow]"' in install
    assert ("COPY", "--chown=airflow:root dags /opt/airflow/dags") in runtime


@pytest.mark.parametrize("name", NAMES)
def test_copies_name_existing_paths(name: str) -> None:
    for keyword, rest in instructions(name):
        if keyword == "COPY" and "--from=" not in rest:
            sources = [p for p in rest.split()[:-1] if not p.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY of missing {source}"


def test_the_wheel_carries_the_schemas(tmp_path: Path) -> None:
    """What the hub image's first stage does — copy what its COPY lines name, ``pip wheel --no-deps
    .`` — puts every canonical JSON Schema into conveyor/_schemas (setup.py's build hook), where
    the installed engine finds them."""
    context = tmp_path / "src"
    for keyword, rest in stages("Dockerfile")[0]:
        if keyword == "COPY":
            *sources, _target = rest.split()
            for source in sources:
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, context / source, ignore=IGNORED)
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy(REPO / source, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--wheel-dir",
            str(tmp_path),
            ".",
        ],
        check=True,
        timeout=300,
        capture_output=True,
        cwd=context,
    )
    (wheel,) = tmp_path.glob("conveyor_hub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"conveyor/_schemas/{p.name}" for p in (REPO / "schemas").glob("*.json")}
    assert "conveyor/_schemas/envelope.json" in expected
    assert expected <= names
    assert "conveyor/reconcile/templates/report.html.j2" in names
    assert any(n.startswith("connectors/") for n in names)
    assert any(n.startswith("simulators/") for n in names)


def included(name: str) -> set[str]:
    """What the Dockerfile's own ignore file lets into the build context: it excludes everything
    (``*``) and lets in the paths it names with ``!``."""
    lines = (DOCKER / f"{name}.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    return {rule[1:] for rule in rules if rule.startswith("!")}


@pytest.mark.parametrize("name", NAMES)
def test_build_context_is_only_what_the_image_copies(name: str) -> None:
    allowed = included(name)
    copied = set()
    for keyword, rest in instructions(name):
        if keyword == "COPY" and "--from=" not in rest:
            copied.update(p for p in rest.split()[:-1] if not p.startswith("--"))
    assert copied == allowed
    for secret in (".env", "docker/.env", "docker/systems.env", ".venv", ".conveyor", ".git"):
        assert not any(secret == a or secret.startswith(a + "/") for a in allowed), secret
