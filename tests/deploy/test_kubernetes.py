"""deploy/kubernetes: valid against the Kubernetes schemas, complete in its kustomization, and in step
with the code: entry points, setting names, secret files, the body limit, the GPU worker and KEDA's queue."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from storage.broker import QUEUE_INPAINT
from storage.settings import Settings, is_secret
from storage.settings_doc import env_names
from worker.health import DEADLINE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
VALIDATE = BIN / "kubernetes-validate"
NOT_LISTED = {"kustomization.yaml", "secret.example.yaml"}
NO_SCHEMA = {"ScaledObject", "TriggerAuthentication"}
"""KEDA's kinds: kubernetes-validate has no schema for them."""
SECRET = "inpaint-secrets"
BODY_SIZE = "nginx.ingress.kubernetes.io/proxy-body-size"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = {path.name: documents(path) for path in sorted(BASE.glob("*.yaml")) if path.name != "kustomization.yaml"}
KUSTOMIZATION = yaml.safe_load((BASE / "kustomization.yaml").read_text())


def find(kind: str, name: str) -> dict[str, Any]:
    found = [
        doc for docs in MANIFESTS.values() for doc in docs if (doc["kind"], doc["metadata"]["name"]) == (kind, name)
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found in deploy/kubernetes"
    return found[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for docs in MANIFESTS.values():
        for doc in docs:
            if doc["kind"] in ("Deployment", "Job"):
                yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) for every container, init containers included."""
    for name, spec in pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield name, spec, container


def setting_names() -> set[str]:
    return {env for name, field in Settings.model_fields.items() for env in env_names(name, field)}


def secret_settings() -> set[str]:
    return {env for name, field in Settings.model_fields.items() if is_secret(field) for env in env_names(name, field)}


def secret_keys() -> set[str]:
    return set(find("Secret", SECRET)["stringData"])


def config_keys() -> set[str]:
    return set(find("ConfigMap", "inpaint-config")["data"])


def bytes_of(size: str) -> int:
    """An nginx size: 12m -> 12 MiB (k, m and g are powers of 1024), 1024 -> 1024 bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
    assert match, f"{size!r} is not an nginx size"
    number, unit = match.groups()
    return int(number) * 1024 ** "_kmg".index(unit or "_")


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert VALIDATE.exists(), "kubernetes-validate is missing: the test extra (pyproject.toml) installs it"
    return subprocess.run(
        [str(VALIDATE), "--strict", "--quiet", *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_manifests_pass_kubernetes_validate_strict() -> None:
    paths = [BASE / name for name, docs in MANIFESTS.items() if any(doc["kind"] not in NO_SCHEMA for doc in docs)]
    assert len(paths) >= 8, paths
    result = validate(*paths)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output, output  # e.g. an apiVersion with no schema: nothing was checked


def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "nme": "y"}}))
    result = validate(bad)
    assert result.returncode != 0 and "nme" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = KUSTOMIZATION["resources"]
    assert len(listed) == len(set(listed)), listed
    assert all((BASE / name).is_file() for name in listed), listed
    assert sorted(listed) == sorted(set(MANIFESTS) - NOT_LISTED)
    assert KUSTOMIZATION["namespace"] == find("Namespace", "inpaint")["metadata"]["name"]


def probes(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container]


def test_commands_are_the_project_entry_points() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    seen = 0
    for workload, _, container in containers():
        commands = [container["command"], *(p["exec"]["command"] for p in probes(container) if "exec" in p)]
        for command in commands:
            assert command[0] in scripts, f"{workload}: {command}"
            seen += 1
    assert seen >= 10


def test_exec_probes_outlast_the_health_checks_own_deadline() -> None:
    """`inpaint-worker health` gives up after DEADLINE_SECONDS and says why; a probe cut off sooner says nothing."""
    timeouts = [p["timeoutSeconds"] for _, _, c in containers() for p in probes(c) if "exec" in p]
    assert len(timeouts) >= 7 and min(timeouts) > DEADLINE_SECONDS + 5, timeouts


def test_every_inpaint_name_is_a_setting() -> None:
    """ConfigMap keys, env names, secret keys and projected files; INPAINT_X_FILE stands for INPAINT_X."""
    names = config_keys() | secret_keys()
    for _, spec, container in containers():
        names |= {env["name"] for env in container.get("env", [])}
        names |= {env["valueFrom"]["secretKeyRef"]["key"] for env in container.get("env", []) if "valueFrom" in env}
        names |= {
            item["key"] for volume in spec.get("volumes", []) for item in volume.get("secret", {}).get("items", [])
        }
    used = {name.removesuffix("_FILE") for name in names if name.startswith("INPAINT_")}
    assert len(used) >= 15, used
    assert used - setting_names() == set()


def test_secret_files_and_references_resolve() -> None:
    """Each INPAINT_X_FILE names a file its pod mounts from the Secret's key INPAINT_X, and X is a secret
    setting (the only kind read from a file); each secret key used is in secret.example.yaml; each
    $(VAR) in a value is defined before it (Kubernetes leaves an unknown one as it is)."""
    keys = secret_keys()
    for workload, spec, container in containers():
        volumes = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        files = {
            f"{mount['mountPath']}/{item['path']}": (volumes[mount["name"]]["secretName"], item["key"])
            for mount in container.get("volumeMounts", [])
            if mount["name"] in volumes
            for item in volumes[mount["name"]]["items"]
        }
        defined = (
            config_keys() if {"configMapRef": {"name": "inpaint-config"}} in container.get("envFrom", []) else set()
        )
        for env in container.get("env", []):
            if env["name"].endswith("_FILE"):
                setting = env["name"].removesuffix("_FILE")
                assert files.get(env["value"]) == (SECRET, setting), (workload, env)
                assert setting in secret_settings(), f"{workload}: only secrets are read from files, not {setting}"
            if "valueFrom" in env:
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == SECRET and ref["key"] in keys, (workload, env)
            assert set(REFERENCE.findall(env.get("value", ""))) <= defined, (workload, env)
            defined.add(env["name"])
        assert {key for _, key in files.values()} <= keys, workload


def test_gpu_worker_has_a_gpu_runs_solo_and_outlasts_a_job() -> None:
    """Its grace period lets a running job finish or be handed back (worker-gpu.yaml says why)."""
    time_limit = Settings.model_fields["job_time_limit_seconds"].default
    spec = find("Deployment", "inpaint-worker-gpu")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["command"]
    assert command[command.index("--pool") + 1] == "solo"
    assert command[command.index("--queues") + 1] == QUEUE_INPAINT
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["terminationGracePeriodSeconds"] >= time_limit


def test_beat_is_one_replica_replaced_not_rolled() -> None:
    beat = find("Deployment", "inpaint-beat")["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    assert beat["template"]["spec"]["containers"][0]["command"][:2] == ["inpaint-worker", "beat"]


def test_keda_scales_the_gpu_worker_on_the_inpaint_list() -> None:
    scaled = find("ScaledObject", "inpaint-worker-gpu")["spec"]
    target = find("Deployment", scaled["scaleTargetRef"]["name"])
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert target["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["inpaint-worker", "run"]
    assert "replicas" not in target["spec"], "KEDA owns the count; apply would reset it"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE_INPAINT
    assert trigger["metadata"]["addressFromEnv"] in config_keys()
    broker = {e["name"]: e.get("value") for e in target["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert broker["INPAINT_BROKER_URL"].endswith("/" + trigger["metadata"]["databaseIndex"])
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    assert all(ref["name"] == SECRET and ref["key"] in secret_keys() for ref in auth["secretTargetRef"])
    if scaled.get("minReplicaCount", 0) == 0:  # KEDA's default: scale from zero
        assert find("ConfigMap", "inpaint-config")["data"]["INPAINT_SUBMIT_UNSERVABLE"] == "accept"


def test_ingress_admits_the_api_body_limit_and_reaches_the_service() -> None:
    ingress = find("Ingress", "inpaint-api")
    assert bytes_of(ingress["metadata"]["annotations"][BODY_SIZE]) == Settings.model_fields["max_body_bytes"].default
    read_timeout = int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert read_timeout > Settings.model_fields["sync_wait_seconds"].default
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = find("Service", backend["name"])
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


def test_the_size_parser() -> None:
    assert [bytes_of(s) for s in ("1024", "12m", "12M", "1k", "2g")] == [1024, 12 * 2**20, 12 * 2**20, 1024, 2 * 2**30]


def test_every_pod_runs_as_uid_1000_on_a_read_only_root() -> None:
    for workload, spec, container in containers():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, workload
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, workload
