"""The docker/ folder is validated, not started (no Docker engine here): the compose file parses,
wires every service to a healthy dependency, pins image tags and keeps secrets out of the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_services_present(compose: dict[str, Any]) -> None:
    assert {
        "postgres",
        "rabbitmq",
        "migrate",
        "worker",
        "airflow-scheduler",
        "airflow-api-server",
    } <= set(compose["services"])


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert image, f"{name} has no image"
        assert ":" in image, f"{name}: unpinned image {image}"
        assert not image.endswith(":latest"), f"{name}: unpinned image {image}"


def test_dependencies_exist_and_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in {"service_healthy", "service_completed_successfully"}
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency]


def test_no_literal_secrets() -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    secrets = re.findall(r"^\s*\w*PASS\w*:\s*(.+)$", text, re.M)
    assert secrets, "expected password settings to check"
    assert all(value.startswith("${") for value in secrets), secrets
    for url in re.findall(r"\w+://[^\s\"']+", text):
        if "@" in url:
            assert ":${" in url, f"credentials in URL: {url}"


@pytest.mark.parametrize("name", ["Dockerfile", "airflow.Dockerfile"])
def test_dockerfiles_copy_existing_paths(name: str) -> None:
    repo = DOCKER.parent
    text = (DOCKER / name).read_text(encoding="utf-8")
    assert re.search(r"^FROM \S+:\S+", text, re.M), "base image must be pinned"
    for line in text.splitlines():
        if line.startswith("COPY "):
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for source in sources:
                assert (repo / source).exists(), f"{name}: COPY of missing {source}"
