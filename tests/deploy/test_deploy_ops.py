"""deploy/ for operations: the Kueue and Cloud Storage FUSE overlays, the scrape configurations
(GMP's PodMonitoring, the Prometheus Operator's PodMonitor), and deploy/monitoring's alert rules
and Grafana dashboard.

Objects of Kubernetes' own kinds are validated as in tests/deploy/test_deploy.py; Kueue's and the
monitoring CRDs' objects against those projects' own CRD schemas, bundled in
tests/data/crd-schemas (tag and commit inside each file), closed to unknown fields as
``kubectl apply``'s strict field validation is. The policies of tests/deploy/test_deploy.py and
tests/deploy/test_deploy_security.py are run again on the new overlays. Every PromQL expression is
checked with promtool and its metric names against a real exporter's ``/metrics``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy import test_deploy as deploy_policies
from tests.deploy import test_deploy_security as security_policies
from tests.support.deploy_manifests import (
    K8S,
    NAMESPACE,
    REPO,
    Obj,
    environment,
    find,
    is_worker,
    of_kind,
    render,
    render_directory,
    workloads,
)
from tests.support.deploy_pss import violations
from tests.support.deploy_schemas import validate as validate_builtin

CRD_SCHEMAS = REPO / "tests" / "data" / "crd-schemas"
MONITORING = REPO / "deploy" / "monitoring"
NEW_OVERLAYS = ("kueue", "gke-gcsfuse", "monitoring")
SPOT_LABEL = "cloud.google.com/gke-spot"
QUEUE_NAME = "kueue.x-k8s.io/queue-name"
NAMESPACED = frozenset({
    "ConfigMap", "Secret", "Service", "StatefulSet", "Job", "Pod", "PersistentVolumeClaim",
    "NetworkPolicy", "ServiceAccount", "LocalQueue", "PodMonitoring", "PodMonitor", "Rules",
    "PrometheusRule",
})  # fmt: skip
CLUSTER_SCOPED = frozenset({"Namespace", "PersistentVolume", "ClusterQueue", "ResourceFlavor"})


# --- CRD schemas ------------------------------------------------------------------------------


@cache
def _extracts() -> dict[tuple[str, str], dict[str, Any]]:
    """(API group, kind) -> the bundled extract of that CRD."""
    found = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        extract = json.loads(path.read_text())
        found[(extract["group"], extract["kind"])] = extract
    return found


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others (strict field
    validation: an unknown field is an error, so a typo cannot pass as an ignored field)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items() if k != "properties"}
    if "properties" in schema:
        out["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def crd_kind(obj: Obj) -> dict[str, Any] | None:
    group = obj["apiVersion"].rpartition("/")[0]
    return _extracts().get((group, obj["kind"]))


def validate_crd_object(obj: Obj, version: str | None = None) -> None:
    """Raise jsonschema.ValidationError unless ``obj`` fits its CRD's schema at ``version``
    (default: its own apiVersion's)."""
    extract = crd_kind(obj)
    assert extract is not None, f"no bundled schema for {obj['apiVersion']} {obj['kind']}"
    version = version or obj["apiVersion"].rpartition("/")[2]
    schema = _closed(extract["versions"][version])
    schema["properties"]["metadata"] = METADATA
    jsonschema.Draft7Validator(schema).validate(obj)
    namespaced = extract["scope"] == "Namespaced"
    assert ("namespace" in obj["metadata"]) == namespaced, (
        f"{obj['kind']}: scope {extract['scope']}"
    )


def validate(obj: Obj) -> None:
    if crd_kind(obj) is not None:
        validate_crd_object(obj)
    else:
        validate_builtin(obj)


def render_with_component(tmp_path: Path, overlay: str, component: str) -> list[Obj]:
    """An overlay plus a component, as a user's own kustomization would combine them."""
    here = tmp_path / "kustomization"
    here.mkdir()
    relative = Path(os.path.relpath(K8S, here))
    (here / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(relative / "overlays" / overlay)],
                "components": [str(relative / "components" / component)],
            }
        )
    )
    return render_directory(here)


@pytest.mark.parametrize("overlay", NEW_OVERLAYS)
def test_new_overlays_render_and_every_object_validates_offline(overlay: str) -> None:
    objs = render(overlay)
    for obj in objs:
        validate(obj)
    crds = {o["kind"] for o in objs if crd_kind(o) is not None}
    expected = {
        "kueue": {"LocalQueue", "ClusterQueue", "ResourceFlavor"},
        "gke-gcsfuse": set(),
        "monitoring": {"PodMonitoring", "Rules"},
    }
    assert crds == expected[overlay]


def test_the_operator_component_validates_with_any_overlay(tmp_path: Path) -> None:
    objs = render_with_component(tmp_path, "local", "monitoring-operator")
    assert len(of_kind(objs, "PodMonitor")) == len(of_kind(objs, "PrometheusRule")) == 1
    for obj in objs:
        validate(obj)
    assert len(objs) == len(render("local")) + 2


def test_kueue_objects_fit_both_served_versions() -> None:
    """v1beta1 (deprecated since Kueue v0.16) and v1beta2: the same manifests would do."""
    for obj in render("kueue"):
        if obj["apiVersion"] == "kueue.x-k8s.io/v1beta1":
            validate_crd_object({**obj, "apiVersion": "kueue.x-k8s.io/v1beta2"}, "v1beta2")


@pytest.mark.parametrize(
    ("kind", "breach", "message"),
    [
        ("ClusterQueue", lambda s: s.update(queueingStrategy="Fifo"), "Fifo"),
        ("ClusterQueue", lambda s: s.update(resourceGrups=[]), "resourceGrups"),
        ("LocalQueue", lambda s: s.update(stopPolicy="Paused"), "Paused"),
        ("ResourceFlavor", lambda s: s.update(nodeLabel={}), "nodeLabel"),
        ("PodMonitoring", lambda s: s["endpoints"][0].pop("port"), "port"),
        ("PodMonitor", lambda s: s.update(podMetricEndpoints=[]), "podMetricEndpoints"),
        ("Rules", lambda s: s["groups"][0]["rules"][0].update(expresion="up"), "expresion"),
        ("PrometheusRule", lambda s: s["groups"][0].update(rule=[]), "rule"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_crd_validation_rejects_a_bad_or_misspelt_field(
    tmp_path: Path, kind: str, breach: Callable[[dict[str, Any]], object], message: str
) -> None:
    objs = [*render("kueue"), *render("monitoring")]
    objs += render_with_component(tmp_path, "local", "monitoring-operator")
    obj = copy.deepcopy(next(o for o in objs if o["kind"] == kind))
    validate_crd_object(obj)
    breach(obj.setdefault("spec", {}))
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_crd_object(obj)


# --- the policies of test_deploy*.py, on the new overlays --------------------------------------

SHARED: list[Callable[[str], None]] = [
    deploy_policies.test_containers_are_locked_down,
    deploy_policies.test_every_container_has_requests_and_limits,
    deploy_policies.test_images_are_pinned_and_batchml_is_the_package_version,
    deploy_policies.test_workers_get_their_grace_period_and_a_margin_before_sigkill,
    deploy_policies.test_redis_persists_every_write_on_a_persistent_volume,
    deploy_policies.test_only_batchml_pods_and_keda_reach_redis,
    deploy_policies.test_jobs_ignore_disruptions_and_fail_at_once_on_configuration_errors,
    deploy_policies.test_scoring_runs_the_training_workers_pod_spec,
    deploy_policies.test_metrics_port_matches_the_scrape_annotation_on_every_interface,
    security_policies.test_the_namespace_enforces_the_restricted_pod_security_standard,
    security_policies.test_every_pod_passes_the_restricted_pod_security_standard,
    security_policies.test_passwords_come_from_the_secret_each_to_its_user_only,
]
SPOT = deploy_policies.test_spot_placement_is_for_workers_only
VOLUME = deploy_policies.test_every_batchml_container_shares_the_volume_at_the_storage_root
VARIABLES = deploy_policies.test_every_batchml_variable_is_an_option_of_the_cli
#: what a new overlay changes on purpose (checked below in its own terms): the Spot placement
#: (that test knows only gke-spot and keda by name), the volume (a bucket), the variables
EXEMPT: dict[str, set[Callable[[str], None]]] = {
    "kueue": set(),
    "gke-gcsfuse": {SPOT, VOLUME, VARIABLES},
    "monitoring": {SPOT},
}
CASES = [
    pytest.param(overlay, policy, id=f"{overlay}-{policy.__name__[5:]}")
    for overlay in NEW_OVERLAYS
    for policy in [*SHARED, SPOT, VOLUME, VARIABLES]
    if policy not in EXEMPT[overlay]
]


@pytest.mark.parametrize(("overlay", "policy"), CASES)
def test_new_overlays_keep_the_deploy_policies(overlay: str, policy: Callable[[str], None]) -> None:
    policy(overlay)


@pytest.mark.parametrize("overlay", ["gke-gcsfuse", "monitoring"])
def test_workers_only_are_on_spot(overlay: str) -> None:
    for w in workloads(render(overlay)):
        on_spot = w.spec.get("nodeSelector", {}).get(SPOT_LABEL) == "true"
        tolerates = SPOT_LABEL in [t.get("key") for t in w.spec.get("tolerations", [])]
        assert on_spot == tolerates == any(is_worker(c) for c in w.spec["containers"]), w.name


@pytest.mark.parametrize("overlay", NEW_OVERLAYS)
def test_every_namespaced_object_is_in_the_batchml_namespace(overlay: str) -> None:
    for obj in render(overlay):
        kind, meta = obj["kind"], obj["metadata"]
        where = f"{overlay} {kind}/{meta['name']}"
        assert kind in CLUSTER_SCOPED | NAMESPACED, f"{where}: is this kind namespaced?"
        if kind in CLUSTER_SCOPED:
            assert "namespace" not in meta, where
        else:
            assert meta.get("namespace") == NAMESPACE, where


# --- Kueue ------------------------------------------------------------------------------------


def _quantity(value: object) -> float:
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


def _pod_requests(pod_spec: Obj) -> dict[str, float]:
    """What Kueue counts for one pod: per resource, the larger of the containers' sum and any
    init container's request."""
    total: dict[str, float] = {}
    for c in pod_spec["containers"]:
        for name, value in c["resources"]["requests"].items():
            total[name] = total.get(name, 0) + _quantity(value)
    for c in pod_spec.get("initContainers", []):
        for name, value in c["resources"]["requests"].items():
            total[name] = max(total.get(name, 0), _quantity(value))
    return total


def test_kueue_admits_each_worker_job_whole_in_order_spot_first() -> None:
    objs = render("kueue")
    local = {q["metadata"]["name"]: q for q in of_kind(objs, "LocalQueue")}
    clusters = {q["metadata"]["name"]: q for q in of_kind(objs, "ClusterQueue")}
    flavors = {f["metadata"]["name"]: f.get("spec", {}) for f in of_kind(objs, "ResourceFlavor")}
    jobs = [w for w in workloads(objs) if w.obj["kind"] == "Job"]
    queued = [w for w in jobs if QUEUE_NAME in w.obj["metadata"]["labels"]]
    # the workers go through Kueue; the loader (one small pod, regular nodes) does not
    assert {w.obj["metadata"]["name"] for w in queued} == {"batchml-train", "batchml-score"}
    assert all(any(is_worker(c) for c in w.spec["containers"]) for w in queued)
    names = [w.obj["metadata"]["labels"][QUEUE_NAME] for w in queued]
    assert len(set(names)) == len(names)  # one LocalQueue each: released one after the other
    for w in queued:
        queue = local[w.obj["metadata"]["labels"][QUEUE_NAME]]
        assert w.obj["spec"]["suspend"] is True, w.name  # Kueue unsuspends on admission
        assert queue["spec"]["stopPolicy"] == "Hold", w.name  # admitted once you release it
        assert "nodeSelector" not in w.spec and "tolerations" not in w.spec, w.name
        cluster = clusters[queue["spec"]["clusterQueue"]]["spec"]
        assert cluster["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": NAMESPACE
        }
        (group,) = cluster["resourceGroups"]
        per_pod = _pod_requests(w.spec)
        assert set(per_pod) <= set(group["coveredResources"]), w.name  # else never admitted
        # Spot first, on-demand second; each flavor lists every covered resource
        assert [f["name"] for f in group["flavors"]] == ["spot", "on-demand"]
        for flavor in group["flavors"]:
            quota = {r["name"]: _quantity(r["nominalQuota"]) for r in flavor["resources"]}
            assert list(quota) == group["coveredResources"], flavor["name"]
            for name, one in per_pod.items():  # the whole Job fits each flavor's quota
                assert one * w.obj["spec"]["parallelism"] <= quota[name], (w.name, flavor)
    spot, on_demand = flavors["spot"], flavors["on-demand"]
    assert spot["nodeLabels"] == {SPOT_LABEL: "true"}
    assert {"key": SPOT_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"} in (
        spot["tolerations"]
    )
    assert SPOT_LABEL not in on_demand.get("nodeLabels", {}) and not on_demand.get("tolerations")
    # Redis stays off Spot, as in gke-spot
    redis = find(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
    terms = redis["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": SPOT_LABEL, "operator": "NotIn", "values": ["true"]} in expressions


# --- Cloud Storage FUSE -----------------------------------------------------------------------

GCSFUSE = "gcsfuse.csi.storage.gke.io"


def _inject_gcsfuse_sidecar(pod: Obj) -> Obj:
    """The pod as GKE's webhook makes it from the annotation gke-gcsfuse/volumes: a native
    sidecar (an init container that keeps running) and its three emptyDir volumes, with the
    security settings of the driver's sidecar spec (GoogleCloudPlatform/gcs-fuse-csi-driver,
    pkg/webhook/sidecar_spec.go: "follows Restricted Pod Security Standard")."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    names = ("gke-gcsfuse-tmp", "gke-gcsfuse-buffer", "gke-gcsfuse-cache")
    spec["initContainers"] = [
        {
            "name": "gke-gcsfuse-sidecar",
            "image": "gke.gcr.io/gcs-fuse-csi-driver-sidecar-mounter:v1",
            "restartPolicy": "Always",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
            },
            "volumeMounts": [{"name": n, "mountPath": f"/{n[4:]}"} for n in names],
        },
        *spec.get("initContainers", []),
    ]
    spec["volumes"] = [*spec["volumes"], *({"name": n, "emptyDir": {}} for n in names)]
    return pod


def test_gcsfuse_every_batchml_pod_mounts_the_bucket_at_the_storage_root() -> None:
    objs = render("gke-gcsfuse")
    assert not of_kind(objs, "PersistentVolume")  # no Filestore share
    assert [c["metadata"]["name"] for c in of_kind(objs, "PersistentVolumeClaim")] == []
    (account,) = of_kind(objs, "ServiceAccount")
    gsa = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert re.fullmatch(r"[A-Za-z_-]+@[A-Za-z_-]+\.iam\.gserviceaccount\.com", gsa)
    pods = [w for w in workloads(objs) if w.labels.get("app.kubernetes.io/name") == "batchml"]
    assert {w.name for w in pods} == {
        "Job/batchml-load", "Job/batchml-train", "Job/batchml-score", "Pod/batchml-toolbox"
    }  # fmt: skip
    for w in pods:
        assert w.pod["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true", w.name
        assert w.spec["serviceAccountName"] == account["metadata"]["name"], w.name
        assert w.spec["automountServiceAccountToken"] is False, w.name  # the driver gets its own
        (bucket,) = [v for v in w.spec["volumes"] if v.get("csi", {}).get("driver") == GCSFUSE]
        attributes = bucket["csi"]["volumeAttributes"]
        assert attributes["bucketName"], w.name
        options = attributes["mountOptions"].split(",")
        assert {"uid=10001", "gid=10001"} <= set(options), w.name  # the batchml user's files
        for c in w.containers():
            mounts = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == bucket["name"]]
            assert mounts == ["/data"], (w.name, c["name"])
            env = environment(objs, c)
            assert env["BATCHML_ROOT"].value == "/data", (w.name, c["name"])
            assert env["BATCHML_STORAGE_MODE"].value == "write-once", (w.name, c["name"])
        # as admitted: with GKE's sidecar injected, the pod still passes "restricted"
        assert violations(_inject_gcsfuse_sidecar(w.pod)) == [], w.name


def test_the_sidecar_model_is_checked_by_the_pod_security_rules() -> None:
    pod = find(render("gke-gcsfuse"), "Job", "batchml-train")["spec"]["template"]
    injected = _inject_gcsfuse_sidecar(pod)
    injected["spec"]["initContainers"][0]["securityContext"]["runAsUser"] = 0
    assert violations(injected)


def test_gcsfuse_storage_mode_is_read_by_batchml() -> None:
    """The overlay's BATCHML_STORAGE_MODE=write-once is read by ``batchml --storage-mode``."""
    VARIABLES("gke-gcsfuse")


def test_readme_gcsfuse_seds_set_the_bucket_and_the_google_service_account(
    tmp_path: Path,
) -> None:
    """deploy/README.md's sed commands for gke-gcsfuse, run as written on a copy of deploy/."""
    readme = (REPO / "deploy" / "README.md").read_text().replace("\\\n", " ")
    section = readme[readme.index("## A Cloud Storage bucket") :]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    seds = [line for line in block.splitlines() if line.startswith("sed -i")]
    assert len(seds) == 2
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    env = {**os.environ, "BUCKET": "my-bucket", "GSA": "my-gsa", "PROJECT_ID": "my-project"}
    for sed in seds:
        subprocess.run(["bash", "-c", sed], cwd=tmp_path, env=env, check=True)
    objs = render_directory(tmp_path / "deploy" / "k8s" / "overlays" / "gke-gcsfuse")
    (account,) = of_kind(objs, "ServiceAccount")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "my-gsa@my-project.iam.gserviceaccount.com"
    )
    buckets = [
        v["csi"]["volumeAttributes"]["bucketName"]
        for w in workloads(objs)
        for v in w.spec.get("volumes", [])
        if v.get("csi", {}).get("driver") == GCSFUSE
    ]
    assert buckets == ["my-bucket"] * 4
