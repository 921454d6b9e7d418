"""docker-compose.yml stays valid and runs the entry points the tests run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_topology_has_every_service() -> None:
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker", "ops-worker", "beat"} <= set(
        SERVICES
    )


def test_commands_are_the_project_entry_points() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("migrate", "api", "worker", "ops-worker", "beat"):
        assert SERVICES[name]["command"][0] in scripts, name


def test_redis_persists_and_never_evicts() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_services_wait_for_healthy_dependencies() -> None:
    for name in ("postgres", "redis", "minio", "api"):
        assert "healthcheck" in SERVICES[name], name
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "ops-worker", "beat"):
        conditions = SERVICES[name]["depends_on"]
        assert conditions["migrate"]["condition"] == "service_completed_successfully"
        assert conditions["redis"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_a_gpu_and_runs_solo() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["command"][worker["command"].index("--pool") + 1] == "solo"


def test_docker_compose_config_accepts_it() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./scripts/test installs it)")
    env = {**os.environ, "INPAINT_SECRET_KEY": "s" * 32, "MINIO_ROOT_PASSWORD": "p" * 16}
    result = subprocess.run([binary, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_healthchecks_use_the_health_routes_and_worker_metrics_ports() -> None:
    assert "http://localhost:8000/readyz" in SERVICES["api"]["healthcheck"]["test"]
    for name in ("worker", "ops-worker"):
        port = SERVICES[name]["environment"]["INPAINT_WORKER_METRICS_PORT"]
        assert int(port) > 0
        assert f"http://localhost:{port}/metrics" in SERVICES[name]["healthcheck"]["test"], name
        # The service keeps every setting of the shared environment, not only its own port.
        assert (
            SERVICES[name]["environment"]["INPAINT_BROKER_URL"] == SERVICES["api"]["environment"]["INPAINT_BROKER_URL"]
        )


def test_flower_is_opt_in_pinned_and_reads_the_same_broker() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["flower"]
    image, _, tag = flower["image"].partition(":")
    assert image == "mher/flower" and tag and tag != "latest"
    assert flower["environment"]["CELERY_BROKER_URL"] == SERVICES["api"]["environment"]["INPAINT_BROKER_URL"]
