"""The task allow-list against the attack it exists for, with real worker processes.

Whoever can write to the queue names an item's task. Before the allow-list a worker imported
and called any ``module:function``: ``pydoc:pipepager`` hands its second argument (the payload)
to ``/bin/sh``, so one raw queue write ran a shell command on every worker, once per attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchml import exitcodes
from batchml.queue import open_queue
from batchml.queue.base import ItemSpec, State, WorkQueue
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow


def _shell_items(marker: Path) -> list[ItemSpec]:
    """Items whose task, if it were ever called as f(ctx, payload), runs or tries to run a shell
    command that appends to ``marker``. ``pydoc.pipepager(text, cmd)`` runs
    ``Popen(cmd, shell=True)``: a dict's keys become ``sh -c <first key>``, and canonical JSON
    sorts keys, so the command is a key that sorts before "task"."""
    command = f"echo ran >> {marker}; :"
    return [
        ItemSpec(payload={"task": "pydoc:pipepager", command: 1}, id="pipepager"),
        ItemSpec(payload={"task": "os:system", "cmd": command}, id="os-system"),
        ItemSpec(payload={"task": "subprocess:getoutput", "cmd": command}, id="getoutput"),
    ]


@dataclass
class Result:
    code: int
    log: str  # stdout and stderr


def _worker(root: Path, url: str, *options: str, env: dict[str, str] | None = None) -> Result:
    """Run ``batchml [options] worker`` as a process until it exits; its code and output."""
    root.mkdir(parents=True, exist_ok=True)  # a worker refuses a storage root that does not exist
    environment = {k: v for k, v in os.environ.items() if k != "BATCHML_TASKS"}
    proc = subprocess.run(
        [sys.executable, "-m", "batchml", "--root", str(root), "--queue", url, *options,
         "worker", "--poll", "0.05", "--lease-ttl", "10"],
        check=False, capture_output=True, text=True, timeout=90,
        env={**environment, **(env or {})},
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    return str(request.getfixturevalue("redis_url"))


def test_shell_tasks_written_into_the_queue_are_dead_at_once_and_never_called(
    tmp_path: Path, url: str
) -> None:
    """Given items naming stdlib functions that reach a shell, written straight into the queue
    (no `queue add`), when a real worker runs, then no command ran (marker absent), each item
    is dead after one attempt with the allow-list's message, and the worker exits 1."""
    marker = tmp_path / "marker"
    queue = open_queue(url)
    queue.push(_shell_items(marker))
    result = _worker(tmp_path / "root", url)
    assert result.code == exitcodes.DEAD_ITEMS, result.log
    assert not marker.exists(), marker.read_text()
    for item in queue.items():
        assert item.state == State.DEAD and item.attempts == 1, item
        task = item.payload["task"]
        assert f"UnknownTask: task {task!r} is not registered, so no worker runs it" in (
            item.last_error or ""
        )
    assert sorted(h.outcome for h in queue.history()) == ["dead"] * 3
    assert result.log.count("dead at once: permanent error: UnknownTask") == 3
    queue.close()


def test_queue_add_refuses_an_unregistered_task_and_queues_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    root.mkdir()
    for task, payload in [
        ("pydoc:pipepager", {f"echo ran >> {marker}; :": 1}),
        ("os:system", {"cmd": f"touch {marker}"}),
        ("noop", {"task": "subprocess:getoutput"}),  # the payload's "task" wins: checked too
    ]:
        result = run_cli(
            capsys, "--root", str(root), "queue", "add", task, "--payload", json.dumps(payload)
        )
        assert result.code == exitcodes.CONFIG, result.err
        named = payload.get("task", task)
        assert f"task {named!r} is not registered" in result.err
        assert "@batchml.task" in result.err and "--tasks" in result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert open_queue(f"sqlite:///{root}/queue.db").items() == []
    assert not marker.exists()


def test_a_tasks_module_without_registrations_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--tasks subprocess` makes nothing of subprocess runnable: the worker refuses to start
    (exit 78) and leaves the item untouched; `queue add` refuses too."""
    marker = tmp_path / "marker"
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    queue.push([ItemSpec(payload={"task": "subprocess:getoutput", "c": f"touch {marker}"})])
    result = _worker(tmp_path / "root", url, "--tasks", "subprocess")
    assert result.code == exitcodes.CONFIG, result.log
    assert "--tasks subprocess: the module defines no task" in result.log
    [item] = queue.items()
    assert item.state == State.READY and item.attempts == 0
    env = _worker(tmp_path / "root", url, env={"BATCHML_TASKS": "tests.sample_tasks,os"})
    assert env.code == exitcodes.CONFIG and "--tasks os: the module defines no task" in env.log
    add = run_cli(capsys, "--root", str(tmp_path), "--tasks", "subprocess", "queue", "add", "noop")
    assert add.code == exitcodes.CONFIG and "--tasks subprocess" in add.err
    assert not marker.exists()


def test_registered_user_tasks_run_with_tasks_or_the_environment(tmp_path: Path) -> None:
    """Given --tasks tests.sample_tasks (or BATCHML_TASKS), then its @task functions run; the
    same items on a worker without it are dead at once."""
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    spec = ItemSpec(payload={"task": "tests.sample_tasks:write_output", "name": "a"}, id="a")
    queue.push([spec])
    flag = _worker(tmp_path / "root", url, "--tasks", "tests.sample_tasks")
    assert flag.code == exitcodes.OK, flag.log
    assert (tmp_path / "root/runs/default/out/a.txt").read_text().startswith("a by ")
    queue.push([ItemSpec(payload={**spec.payload, "name": "b"}, id="b")])
    env = _worker(tmp_path / "root", url, env={"BATCHML_TASKS": "tests.sample_tasks"})
    assert env.code == exitcodes.OK, env.log
    assert (tmp_path / "root/runs/default/out/b.txt").exists()
    queue.push([ItemSpec(payload={**spec.payload, "name": "c"}, id="c")])
    bare = _worker(tmp_path / "root", url)
    assert bare.code == exitcodes.DEAD_ITEMS
    assert queue.get("c").attempts == 1 and "--tasks tests.sample_tasks" in (
        queue.get("c").last_error or ""
    )
    assert not (tmp_path / "root/runs/default/out/c.txt").exists()


def test_queue_add_accepts_a_registered_user_task(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cli = ("--root", str(root), "--tasks", "tests.sample_tasks")
    ok = run_cli(capsys, *cli, "queue", "add", "tests.sample_tasks:write_output", "--id", "w")
    assert ok.code == 0 and "w: added" in ok.out, ok.err
    bad = run_cli(capsys, *cli, "queue", "add", "tests.sample_tasks:validated_write")
    assert bad.code == exitcodes.CONFIG
    assert "sample payload needs a 'name' string" in bad.err
    assert [i.id for i in open_queue(f"sqlite:///{root}/queue.db").items()] == ["w"]


def test_fraud_payload_escaping_the_root_is_refused_at_add_and_dead_at_once_in_the_worker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`queue add fraud.score --payload '{"path": "../../etc/passwd"}'` is refused (exit 78,
    one line); the same payload written straight into the queue is dead on attempt 1."""
    root = tmp_path / "root"
    root.mkdir()
    escape = json.dumps({"path": "../../etc/passwd"})
    add = ("queue", "add", "fraud.score", "--payload", escape)
    result = run_cli(capsys, "--root", str(root), *add)
    assert result.code == exitcodes.CONFIG, result.err
    assert "dataset path '../../etc/passwd' contains '..'" in result.err
    assert len(result.err.strip().splitlines()) == 1
    url = f"sqlite:///{root}/queue.db"
    queue: WorkQueue = open_queue(url)
    assert queue.items() == []
    queue.push([ItemSpec(payload={"task": "fraud.score", "path": "../../etc/passwd"}, id="e")])
    worker = _worker(root, url)
    assert worker.code == exitcodes.DEAD_ITEMS, worker.log
    dead = queue.get("e")
    assert dead.state == State.DEAD and dead.attempts == 1
    assert "PathEscapeError: dataset path '../../etc/passwd'" in (dead.last_error or "")
    assert [h.outcome for h in queue.history()] == ["dead"]


def test_a_package_registers_tasks_through_the_entry_point_group(tmp_path: Path) -> None:
    """Given an installed distribution whose entry point `batchml.tasks` names `acme.echo`,
    then a worker with no --tasks runs it (by that name), and still refuses anything else."""
    site = tmp_path / "site"
    (site / "acme_tasks").mkdir(parents=True)
    (site / "acme_tasks" / "__init__.py").write_text(
        "def echo(ctx, payload):\n    return {'echo': payload['word']}\n"
    )
    dist = site / "acme_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[batchml.tasks]\nacme.echo = acme_tasks:echo\n")
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    queue.push(
        [
            ItemSpec(payload={"task": "acme.echo", "word": "hi"}, id="echo"),
            ItemSpec(payload={"task": "acme_tasks:echo", "word": "no"}, id="by-path"),
        ]
    )
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    result = _worker(tmp_path / "root", url, env={"PYTHONPATH": path})
    assert result.code == exitcodes.DEAD_ITEMS, result.log
    assert queue.get("echo").state == State.DONE and queue.get("echo").result == {"echo": "hi"}
    refused = queue.get("by-path")
    assert refused.attempts == 1 and "is not registered" in (refused.last_error or "")
    assert "acme.echo" in (refused.last_error or "")  # the message lists what is registered
