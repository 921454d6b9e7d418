"""docker-compose.yml stays valid, runs the entry points the tests run, pins one GPU per worker, and
agrees with deploy/caddy/Caddyfile and .env.example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CADDYFILE = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()

GPU_WORKERS = ["worker-gpu0", "worker-gpu1", "worker-gpu2", "worker-gpu3"]
SLIM = ["migrate", "storage-init", "api", "ops-worker", "beat"]
"""Services on the image without torch (the Dockerfile's `api` target)."""
AFTER_INIT = ["api", *GPU_WORKERS, "ops-worker", "beat"]
REQUIRED = {"POSTGRES_PASSWORD": "p" * 32, "INPAINT_SECRET_KEY": "s" * 32, "INPAINT_S3_SECRET_ACCESS_KEY": "k" * 32}
"""The variables the file refuses to run without, with stand-in values."""
PROFILES = sorted({p for service in SERVICES.values() for p in service.get("profiles", [])})
SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "KIB": 1024, "MB": 1000**2, "MIB": 1024**2, "GB": 1000**3, "GIB": 1024**3}


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./scripts/test installs it)")
    return binary


def run_compose(*args: str, profiles: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose [--profile P ...] ARGS` as an operator runs it after `cp .env.example .env`:
    .env.example's values, under `env` (the shell's variables win over the file's)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INPAINT_", "POSTGRES_", "COMPOSE_"))}
    flags = ["--env-file", str(ROOT / ".env.example")]
    flags += [flag for profile in profiles for flag in ("--profile", profile)]
    return subprocess.run(
        [compose_binary(), *flags, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def render(profiles: list[str]) -> dict[str, Any]:
    result = run_compose("config", profiles=profiles, env=REQUIRED)
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = yaml.safe_load(result.stdout)
    return rendered


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def caddy_seconds(name: str) -> float:
    match = re.search(rf"^\s*{name}\s+(\d+)s\s*$", CADDYFILE, re.MULTILINE)
    assert match, f"the Caddyfile sets no {name} timeout in seconds"
    return float(match.group(1))


def test_topology_has_every_service() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "seaweedfs",
        "storage-init",
        "migrate",
        "api",
        "proxy",
        *GPU_WORKERS,
        "ops-worker",
        "beat",
        "flower",
    }


def test_commands_are_the_project_entry_points() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in [*SLIM, *GPU_WORKERS]:
        assert SERVICES[name]["command"][0] in scripts, name
    assert SERVICES["storage-init"]["command"] == ["inpaint-admin", "storage", "init"]
    assert SERVICES["storage-init"]["restart"] == "no" and SERVICES["migrate"]["restart"] == "no"


def test_redis_persists_and_never_evicts() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_services_wait_for_healthy_dependencies() -> None:
    for name in ["postgres", "redis", "seaweedfs", *AFTER_INIT]:
        assert "healthcheck" in SERVICES[name], name
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["storage-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    for name in AFTER_INIT:
        conditions = SERVICES[name]["depends_on"]
        assert conditions["migrate"]["condition"] == "service_completed_successfully", name
        assert conditions["storage-init"]["condition"] == "service_completed_successfully", name
        assert conditions["redis"]["condition"] == "service_healthy", name
    assert SERVICES["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_worker_and_beat_healthchecks_prove_work_gets_done() -> None:
    for name in [*GPU_WORKERS, "ops-worker"]:
        service = SERVICES[name]
        command = service["command"]
        health = ["CMD", "inpaint-worker", "health", "--queues", option(command, "--queues")]
        # The check pings the worker by its node name: the one `run` was given, if any.
        health += ["--name", option(command, "--name")] if "--name" in command else []
        assert service["healthcheck"]["test"] == health, name
    for name in GPU_WORKERS:
        assert int(SERVICES[name]["healthcheck"]["start_period"].removesuffix("s")) >= 120, name
    schedule = option(SERVICES["beat"]["command"], "--schedule")
    assert SERVICES["beat"]["healthcheck"]["test"] == [
        "CMD",
        "inpaint-worker",
        "health",
        "--beat",
        "--schedule",
        schedule,
    ]
    assert "/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_rendered_gpu_workers_each_hold_their_own_card() -> None:
    """The file as Compose reads it, every profile on: one card per worker, by id, solo pool, own name."""
    services = render(PROFILES)["services"]
    ids, names = [], []
    for name in GPU_WORKERS:
        service = services[name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, name
        device = devices[0]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        assert "count" not in device, f"{name}: `count` gives every replica the same GPU; use device_ids"
        assert len(device["device_ids"]) == 1, name
        ids.append(device["device_ids"][0])
        command = service["command"]
        assert option(command, "--pool") == "solo", name
        names.append(option(command, "--name"))
        assert service["stop_grace_period"] == "5m" and "models:/models" in " ".join(map(str, service["volumes"]))
        assert service["environment"]["INPAINT_BROKER_URL"] == services["api"]["environment"]["INPAINT_BROKER_URL"]
        assert int(service["environment"]["INPAINT_WORKER_METRICS_PORT"]) > 0
    assert sorted(ids) == ["0", "1", "2", "3"]
    assert len(set(names)) == len(names), names


def test_one_gpu_by_default_more_behind_profiles() -> None:
    assert "profiles" not in SERVICES["worker-gpu0"]
    for k, name in enumerate(GPU_WORKERS[1:], start=1):
        assert set(SERVICES[name]["profiles"]) == {f"gpus-{n}" for n in range(k + 1, 5)}, name


@pytest.mark.parametrize("profiles", [[], PROFILES], ids=["no-profile", "every-profile"])
def test_docker_compose_config_accepts_it(profiles: list[str]) -> None:
    result = run_compose("config", "-q", profiles=profiles, env=REQUIRED)
    assert result.returncode == 0, result.stderr


def test_the_database_password_has_no_default() -> None:
    result = run_compose(
        "config", "-q", profiles=[], env={k: v for k, v in REQUIRED.items() if k != "POSTGRES_PASSWORD"}
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_slim_services_and_gpu_workers_use_their_own_image_target() -> None:
    for name in SLIM:
        assert SERVICES[name]["build"]["target"] == "api", name
        assert SERVICES[name]["image"] == "inpaint-queue-api:latest", name
    for name in GPU_WORKERS:
        assert SERVICES[name]["build"]["target"] == "worker", name
        assert SERVICES[name]["image"] == "inpaint-queue-worker:latest", name


def test_the_bootstrap_key_reaches_the_api_alone() -> None:
    holders = [
        name for name, service in SERVICES.items() if "INPAINT_BOOTSTRAP_API_KEY" in service.get("environment", {})
    ]
    assert holders == ["api"]
    result = run_compose("config", profiles=PROFILES, env={**REQUIRED, "INPAINT_BOOTSTRAP_API_KEY": "iq_" + "b" * 48})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["api"]["environment"]["INPAINT_BOOTSTRAP_API_KEY"] == "iq_" + "b" * 48
    assert [name for name, service in services.items() if "iq_" + "b" * 48 in str(service)] == ["api"]
    # Unset, it stays unset in the container (null), never an empty key.
    assert render(PROFILES)["services"]["api"]["environment"]["INPAINT_BOOTSTRAP_API_KEY"] is None


def test_every_image_but_our_own_builds_is_pinned() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            continue
        _, _, tag = service["image"].partition(":")
        assert tag and tag != "latest", f"{name}: {service['image']} is not pinned"


def test_the_s3_server_is_seaweedfs_not_minio() -> None:
    seaweedfs = SERVICES["seaweedfs"]
    image, _, tag = seaweedfs["image"].partition(":")
    assert image == "chrislusf/seaweedfs" and re.fullmatch(r"\d+\.\d+", tag), seaweedfs["image"]
    assert "minio" not in (ROOT / "docker-compose.yml").read_text().lower()
    assert "wget" in seaweedfs["healthcheck"]["test"], "the SeaweedFS image is Alpine: use busybox wget"
    assert SERVICES["api"]["environment"]["INPAINT_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"


def test_the_api_is_reached_through_the_proxy_only() -> None:
    api, proxy = SERVICES["api"], SERVICES["proxy"]
    assert "ports" not in api and api["expose"] == ["8000"]
    assert option(api["command"], "--port") == "8000" and option(api["command"], "--workers")
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert re.search(r"dynamic a \{\s*name api\s*port 8000\b", CADDYFILE), "the proxy does not find every api container"


def test_the_proxy_limits_bodies_and_times_like_the_api() -> None:
    match = re.search(r"max_size\s+(\d+)\s*([A-Za-z]*)", CADDYFILE)
    assert match, "the Caddyfile sets no request_body max_size"
    size = int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]
    fields = Settings.model_fields
    assert size == fields["max_body_bytes"].default
    assert caddy_seconds("read_header") <= fields["header_timeout_seconds"].default
    assert caddy_seconds("read_body") <= fields["body_timeout_seconds"].default
    assert caddy_seconds("idle") <= fields["header_timeout_seconds"].default
    assert caddy_seconds("keepalive") < fields["keep_alive_seconds"].default


def test_presigned_urls_name_the_proxys_s3_site() -> None:
    public = SERVICES["api"]["environment"]["INPAINT_S3_PUBLIC_ENDPOINT_URL"]
    assert public == "https://${INPAINT_S3_DOMAIN:-s3.localhost}"
    assert SERVICES["proxy"]["environment"]["INPAINT_S3_DOMAIN"] == "${INPAINT_S3_DOMAIN:-s3.localhost}"
    assert re.search(r"\{\$INPAINT_S3_DOMAIN:s3\.localhost\} \{.*?reverse_proxy seaweedfs:8333", CADDYFILE, re.DOTALL)


def test_env_example_lists_every_variable_the_file_reads() -> None:
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))
    assert read - listed == set(), "missing from .env.example"
    assert {"COMPOSE_PROFILES", "INPAINT_BOOTSTRAP_API_KEY", *REQUIRED} <= listed
    for name in REQUIRED:
        value = re.search(rf"^{name}=(.*)$", ENV_EXAMPLE, re.MULTILINE)
        assert value and value.group(1) == "", f"{name}: .env.example leaves it empty, so Compose refuses to start"
    assert "openssl rand -hex 32" in ENV_EXAMPLE


def test_flower_is_opt_in_pinned_and_reads_the_same_broker() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["flower"]
    image, _, tag = flower["image"].partition(":")
    assert image == "mher/flower" and tag and tag != "latest"
    assert flower["environment"]["CELERY_BROKER_URL"] == SERVICES["api"]["environment"]["INPAINT_BROKER_URL"]
