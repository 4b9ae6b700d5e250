"""The deployment files in configs/ are consistent with the code they start: the KubeRay
manifests, the cluster settings and the Serve config (no Kubernetes API server here, so
their fields are checked against each other and the code, not applied)."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import yaml

from prescale.actors.controller import parse_args
from prescale.app.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "configs" / "kuberay"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def test_rayjob_runs_the_controller_on_the_raycluster_with_the_cluster_config():
    [cluster, pvc] = _docs("raycluster.yaml")
    [job] = _docs("rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "prescale.actors.controller"]
    args = parse_args(argv[3:])
    s = load_settings(ROOT / args.config)  # the config it names exists and is valid
    assert s.ray.detached and s.ray.address == "auto"
    claim = cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"][1]
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_one_monitor_worker_per_kubernetes_node_with_the_host_cgroups():
    [cluster, _] = _docs("raycluster.yaml")
    [group] = cluster["spec"]["workerGroupSpecs"]
    pod = group["template"]
    anti = pod["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["hostPID"] is True
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["cgroup"]["mountPath"] == vols["cgroup"]["hostPath"]["path"] == "/sys/fs/cgroup"
    assert cluster["spec"]["rayVersion"].startswith(importlib.import_module("ray").__version__[:4])


def test_serve_config_imports_the_app_builder():
    cfg = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    [app] = cfg["applications"]
    module, attr = app["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    load_settings(ROOT / app["args"]["config"])


def test_every_package_is_listed_for_the_wheel():
    """pyproject lists the packages of the prescale.* namespace one by one (the
    repository's app/, actors/, tuning/, scripts/, configs/ map onto it): a new package
    missing there would be left out of the wheel."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {"prescale." + ".".join(p.parent.relative_to(ROOT).parts)
             for top in ("app", "actors", "tuning", "scripts")
             for p in (ROOT / top).rglob("__init__.py")}
    found |= {"prescale.configs"} | {f"prescale.configs.{d.name}"
                                     for d in (ROOT / "configs").iterdir() if d.is_dir()}
    assert found == listed, (sorted(found - listed), sorted(listed - found))
