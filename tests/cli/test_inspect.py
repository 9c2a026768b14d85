"""``queue items`` / ``queue show`` (read-only inspection), and ``--json`` on every command that
prints a result, run through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchml import exitcodes
from batchml.queue.base import ItemSpec, QueueOptions, RetryPolicy, State
from batchml.queue.sqlite.queue import SqliteQueue
from tests.support.cli import run_cli
from tests.support.fraud_env import Env, make_env, train

TASKS = "tests.sample_tasks"


def _cli(capsys: pytest.CaptureFixture[str], root: Path, url: str, *args: str) -> Any:
    result = run_cli(capsys, "--root", str(root), "--queue", url, "--tasks", TASKS, *args)
    assert result.code == 0, result.err
    return json.loads(result.out) if "--json" in args else result.out


@pytest.fixture
def worked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """A queue after one worker ran it: ``bad`` dead (1 attempt), ``after`` blocked behind it,
    ``good`` done with an output, ``other`` (run 'second') done."""
    root = tmp_path / "root"
    root.mkdir()
    q = SqliteQueue(tmp_path / "queue.db", QueueOptions(retry=RetryPolicy(max_attempts=1)))
    q.push(
        [
            ItemSpec(payload={"task": f"{TASKS}:always_fail", "run": "default"}, id="bad"),
            ItemSpec(
                payload={"task": f"{TASKS}:write_output", "name": "a", "run": "default"},
                id="after",
                depends_on=("bad",),
            ),
            ItemSpec(
                payload={"task": f"{TASKS}:write_output", "name": "g", "run": "default"},
                id="good",
            ),
            ItemSpec(payload={"task": f"{TASKS}:noop", "run": "second"}, id="other"),
        ]
    )
    result = run_cli(
        capsys, "--root", str(root), "--queue", q.url, "--tasks", TASKS, "--max-attempts", "1",
        "worker", "--worker-id", "w-inspect", "--poll", "0.02",
    )  # fmt: skip
    assert result.code == exitcodes.DEAD_ITEMS, result.err
    return root, q.url


def test_items_lists_and_filters_by_state_task_run_and_limit(
    worked: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = worked
    every = _cli(capsys, root, url, "queue", "items", "--json")
    states = {i["id"]: i["state"] for i in every["items"]}
    assert states == {"bad": "dead", "after": "blocked", "good": "done", "other": "done"}
    assert [i["id"] for i in every["items"]] == ["bad", "after", "good", "other"]  # push order
    assert every["shown"] == every["matched"] == 4
    dead = _cli(capsys, root, url, "queue", "items", "--state", "dead", "--json")
    assert [i["id"] for i in dead["items"]] == ["bad"]
    assert dead["items"][0]["attempts"] == 1 and "poison item" in dead["items"][0]["last_error"]
    stuck = _cli(capsys, root, url, "queue", "items", "--state", "dead", "--state", "BLOCKED",
                 "--json")  # fmt: skip
    assert {i["id"] for i in stuck["items"]} == {"bad", "after"}
    writes = _cli(capsys, root, url, "queue", "items", "--task", f"{TASKS}:write_output",
                  "--json")  # fmt: skip
    assert [i["id"] for i in writes["items"]] == ["after", "good"]
    second = _cli(capsys, root, url, "queue", "items", "--run", "second", "--json")
    assert [i["id"] for i in second["items"]] == ["other"]
    first = _cli(capsys, root, url, "queue", "items", "--limit", "1", "--json")
    assert [i["id"] for i in first["items"]] == ["bad"] and first["matched"] == 4
    text = _cli(capsys, root, url, "queue", "items", "--limit", "2")
    assert "bad" in text and "after" in text and "good" not in text
    assert "4 item(s) (first 2; raise --limit)" in text
    wrong = run_cli(capsys, "--root", str(root), "--queue", url, "queue", "items", "--state", "x")
    assert wrong.code == exitcodes.CONFIG and "the states are waiting, ready" in wrong.err


def test_show_tells_everything_about_one_item(
    worked: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = worked
    bad = _cli(capsys, root, url, "queue", "show", "bad", "--json")
    assert bad["state"] == "dead" and bad["task"] == f"{TASKS}:always_fail"
    assert bad["payload"] == {"task": f"{TASKS}:always_fail", "run": "default"}
    assert bad["dependents"] == [{"id": "after", "state": "blocked"}]
    assert bad["dependencies"] == [] and bad["outputs"] == []
    (attempt,) = bad["history"]
    assert attempt["worker"] == "w-inspect" and attempt["outcome"] == "dead"
    assert "poison item" in attempt["error"] and "poison item" in bad["last_error"]
    after = _cli(capsys, root, url, "queue", "show", "after", "--json")
    assert after["dependencies"] == [{"id": "bad", "state": "dead"}] and after["history"] == []
    good = _cli(capsys, root, url, "queue", "show", "good", "--json")
    assert good["result"] == {"name": "g"} and [h["outcome"] for h in good["history"]] == ["done"]
    out = {o["final"]: o for o in good["outputs"]}["runs/default/out/g.txt"]
    assert len(out["sha256"]) == 64
    text = _cli(capsys, root, url, "queue", "show", "bad")
    assert "needed by" in text and "after (blocked)" in text and "poison item" in text
    missing = run_cli(capsys, "--root", str(root), "--queue", url, "queue", "show", "nope")
    assert missing.code == 1 and missing.err.count("\n") == 1
    assert "no item 'nope'" in missing.err and "queue items" in missing.err


def test_inspection_never_creates_nor_changes_a_queue(
    worked: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped queue path is refused, not created; reading a real one changes nothing."""
    root, url = worked
    typo = tmp_path / "typo.db"
    for args in (("queue", "items"), ("queue", "show", "bad")):
        refused = run_cli(capsys, "--root", str(root), "--queue", f"sqlite:///{typo}", *args)
        assert refused.code == exitcodes.CONFIG and not typo.exists(), refused.err
    before = SqliteQueue(tmp_path / "queue.db").items()
    _cli(capsys, root, url, "queue", "items", "--json")
    _cli(capsys, root, url, "queue", "show", "bad", "--json")
    assert SqliteQueue(tmp_path / "queue.db").items() == before


@pytest.mark.redis
def test_items_and_show_read_a_redis_queue(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchml.queue import open_queue

    q = open_queue(redis_url)
    q.push([ItemSpec(payload={"task": "noop", "run": "r"}, id="x"),
            ItemSpec(payload={"task": "noop", "run": "r"}, id="y", depends_on=("x",))])  # fmt: skip
    listed = _cli(capsys, tmp_path, redis_url, "queue", "items", "--json")
    assert {i["id"]: i["state"] for i in listed["items"]} == {"x": "ready", "y": "waiting"}
    shown = _cli(capsys, tmp_path, redis_url, "queue", "show", "x", "--json")
    assert shown["dependents"] == [{"id": "y", "state": "waiting"}] and shown["history"] == []


def test_add_and_requeue_dead_print_json(
    worked: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = worked
    added = _cli(capsys, root, url, "queue", "add", "noop", "--id", "n1", "--json")
    assert added == {"id": "n1", "outcome": "added"}
    again = _cli(capsys, root, url, "queue", "add", "noop", "--id", "n1", "--json")
    assert again == {"id": "n1", "outcome": "exists"}
    requeued = _cli(capsys, root, url, "queue", "requeue-dead", "--json")
    assert requeued == {"requeued": 1, "unblocked": 1}
    states = {i.id: i.state for i in SqliteQueue(Path(url.removeprefix("sqlite:///"))).items()}
    assert states["bad"] is State.READY and states["after"] is State.WAITING


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The small simulated days, a lineage trained on the first two."""
    env = make_env(tmp_path_factory.mktemp("inspect"))
    assert train(env, days=env.days[:2], test_days=[]) == [exitcodes.OK]
    return env


def test_data_list_queue_push_and_fraud_score_print_json(
    trained: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env = trained
    (env.root / "datasets" / "testing").mkdir(parents=True, exist_ok=True)
    (env.root / "datasets" / "testing" / "holdout.parquet").write_bytes(
        (env.root / "datasets" / "training" / f"{env.days[0]}.parquet").read_bytes()
    )
    listing = _cli(capsys, env.root, env.queue.url, "data", "list", "--json")
    assert listing == {"training": env.days, "testing": ["holdout.parquet"]}
    days = env.days[2:4]
    holdout = "datasets/testing/holdout.parquet"
    pushed = _cli(capsys, env.root, env.queue.url, "queue", "push", "--start", days[0],
                  "--end", days[1], "--test", holdout, "--json")  # fmt: skip
    assert pushed["run"] == "default" and pushed["days"] == days
    assert pushed["outcomes"]["added"] >= 2 and pushed["outcomes"]["reset"] == 0
    scored = _cli(capsys, env.root, env.queue.url, "fraud", "score", env.days[40], "--json")
    assert scored["version"] == 2 and scored["trained_through"] == env.days[1]
    assert scored["queued"] == 1 and scored["run"] == "default"
    (item,) = scored["items"]
    assert item["outcome"] == "added" and env.queue.get(item["id"]).payload["version"] == 2
