"""The deployment kit: Dockerfile (hadolint), Kubernetes manifests, and that they agree with the
Alertmanager snippets (service URL, port, secret names, uid)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.kit._tools import (
    ALERTMANAGER_DIR,
    DEPLOY_DIR,
    REPO,
    VALUES_FILE,
    load_yaml,
    load_yaml_all,
    require_tool,
    run,
    webhook_config,
)

DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes, keyed by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(DEPLOY_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in load_yaml_all(path):
            assert obj.get("apiVersion") and obj.get("kind"), path.name
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            assert obj["metadata"].get("namespace") == "monitoring", f"{key} not in namespace monitoring"
            found[key] = obj
    return found


@pytest.fixture(scope="module")
def container(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    [only] = objects[("Deployment", "alert-receiver")]["spec"]["template"]["spec"]["containers"]
    return only


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def _container_port(container: dict[str, Any], name_or_number: str | int) -> int:
    for port in container["ports"]:
        if name_or_number in (port.get("name"), port["containerPort"]):
            return port["containerPort"]
    raise AssertionError(f"container has no port {name_or_number!r}")


# --- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool("hadolint")
    # --failure-threshold style: even style-level findings fail. .hadolint.yaml, if any, is read from cwd.
    result = run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_receiver_as_non_root_on_9095() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(stages) == 2 and stages[-1] == "python:3.11-slim", stages
    assert re.search(r"^RUN .*pip wheel", text, flags=re.MULTILINE)
    assert re.search(r"^EXPOSE 9095$", text, flags=re.MULTILINE)
    assert 'CMD ["alert-receiver", "serve", "--host", "0.0.0.0", "--port", "9095"]' in text
    assert "http://127.0.0.1:9095/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert "RECEIVER_DATABASE_URL=sqlite+aiosqlite:////data/alert-receiver.db" in text
    [user] = re.findall(r"^USER\s+(\S+)$", text, flags=re.MULTILINE)
    assert user.split(":")[0] not in {"root", "0"}


def test_pod_runs_as_the_image_user(container: dict[str, Any], objects: dict[tuple[str, str], Any]) -> None:
    [user] = re.findall(r"^USER\s+(\d+)", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    pod = objects[("Deployment", "alert-receiver")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]


# --- Kubernetes manifests --------------------------------------------------------------------------


def test_kustomization_applies_everything_but_the_placeholder_secrets() -> None:
    kustomization = load_yaml(DEPLOY_DIR / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in DEPLOY_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.yaml"}


@pytest.mark.parametrize("source", ["values.yaml", "alertmanagerconfig.yaml"])
def test_alertmanager_urls_point_at_the_service(source: str, objects: dict, container: dict) -> None:
    if source == "values.yaml":
        url = webhook_config(load_yaml(VALUES_FILE))["url"]
    else:
        [receiver] = load_yaml(ALERTMANAGER_DIR / source)["spec"]["receivers"]
        url = receiver["webhookConfigs"][0]["url"]
    parts = urlsplit(url)
    service = objects[("Service", "alert-receiver")]
    meta = service["metadata"]
    assert parts.hostname == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert parts.path == "/webhook"
    [port] = service["spec"]["ports"]
    assert parts.port == port["port"] == 9095
    # The Service forwards to the container's 9095, where the image's CMD listens.
    assert _container_port(container, port["targetPort"]) == 9095
    selector = service["spec"]["selector"]
    labels = objects[("Deployment", "alert-receiver")]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_probes_use_health_endpoints(container: dict[str, Any]) -> None:
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert _container_port(container, container[probe]["httpGet"]["port"]) == 9095


def test_sqlite_means_one_replica(objects: dict, container: dict[str, Any]) -> None:
    deployment = objects[("Deployment", "alert-receiver")]
    database_url = _env(container)["RECEIVER_DATABASE_URL"]["value"]
    if database_url.startswith("sqlite"):
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/data" in mounts and database_url.startswith("sqlite+aiosqlite:////data/")


def test_secrets_referenced_exist_with_their_keys(objects: dict, container: dict[str, Any]) -> None:
    for name, item in _env(container).items():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = objects.get(("Secret", ref["name"]))
            assert secret, f"{name} refers to missing Secret {ref['name']}"
            assert ref["key"] in secret["stringData"], f"{name}: Secret {ref['name']} has no {ref['key']}"
    # Alertmanager mounts the whole `alert-receiver` Secret: it must hold the webhook token only.
    assert set(objects[("Secret", "alert-receiver")]["stringData"]) == {"token"}
    assert "RECEIVER_WEBHOOK_TOKEN" in _env(container)


def test_config_file_is_mounted_and_valid(objects: dict, container: dict, tmp_path: Path) -> None:
    config_path = Path(_env(container)["RECEIVER_CONFIG"]["value"])
    [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    pod = objects[("Deployment", "alert-receiver")]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = objects[("ConfigMap", volume["configMap"]["name"])]
    content = config_map["data"][config_path.name]
    # The receiver's own validator, run without any RECEIVER_* variable of this machine.
    (tmp_path / config_path.name).write_text(content, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    result = run(
        [sys.executable, "-m", "receiver", "check-config", str(tmp_path / config_path.name)],
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
