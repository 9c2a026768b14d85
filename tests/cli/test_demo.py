"""``batchml demo`` and ``data generate`` never overwrite nor delete what a user made.

Each test runs the real CLI in a child process. The demo is run small (16 days, 100 customers,
1 worker: a few seconds) wherever it is allowed to run at all.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from batchml import exitcodes
from batchml.cli.demo_cmd import MARKER, MARKER_TEXT
from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.storage import Storage
from tests.support.cli import Result, run_batchml

SMALL_DEMO = ("--days", "16", "--customers", "100", "--terminals", "200", "--workers", "1")
SMALL_DAYS = ("--days", "3", "--customers", "50", "--terminals", "50")
THEIRS = SimulationConfig(n_customers=50, n_terminals=50, n_days=3, seed=1)
README = Path(__file__).resolve().parents[2] / "README.md"


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) and the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def imported_root(tmp_path: Path) -> Path:
    """A root holding three days imported by ``data import`` (simulated with seed 1, unlike
    the demo's and ``data generate``'s default seed 0), and a notes file of the user's."""
    source, root = Storage(tmp_path / "source"), tmp_path / "mine"
    for day, part in datasets.split_days(simulate(THEIRS)):
        datasets.write_day(source, day, part)
    assert run_batchml("--root", str(root), "data", "import", str(source.root)).code == 0
    (root / "notes.txt").write_text("my notes\n")
    return root


def test_demo_refuses_a_root_holding_imported_data_and_leaves_it_intact(tmp_path: Path) -> None:
    """Given a root with imported days and a notes file, when the demo is pointed at it (plain,
    then --fresh), then both are refused in one line saying what the root holds, and not one
    byte under the root changed (the old demo overwrote the days, marked the root as its own,
    and the --fresh run then deleted the whole root)."""
    root = imported_root(tmp_path)
    before = snapshot(root)
    plain = run_batchml("--root", str(root), "demo", *SMALL_DEMO)
    assert plain.code == exitcodes.CONFIG, plain.err
    line = one_line(plain)
    assert f"{root} is not a demo folder" in line and "3 training day(s)" in line
    assert "notes.txt" in line and "drop --root" in line
    fresh = run_batchml("--root", str(root), "demo", "--fresh", *SMALL_DEMO)
    assert fresh.code == exitcodes.CONFIG, fresh.err
    assert "is not a demo folder" in one_line(fresh)
    assert snapshot(root) == before


def test_an_empty_marker_left_by_an_older_demo_does_not_make_a_demo_root(tmp_path: Path) -> None:
    """Given a user's root where the old demo had touched an empty .batchml-demo, when
    --fresh runs there, then it is refused and the notes survive."""
    root = tmp_path / "mine"
    root.mkdir()
    (root / MARKER).touch()
    (root / "notes.txt").write_text("my notes\n")
    result = run_batchml("--root", str(root), "demo", "--fresh", *SMALL_DEMO)
    assert result.code == exitcodes.CONFIG and "is not a demo folder" in one_line(result)
    assert (root / "notes.txt").read_text() == "my notes\n"


def test_the_demo_refuses_a_queue_of_the_users(tmp_path: Path) -> None:
    """A BATCHML_QUEUE of the user's (here a SQLite file with nothing in it yet) is refused:
    the demo would add its items to it."""
    queue = tmp_path / "theirs.db"
    result = run_batchml(
        "--root", str(tmp_path / "new"), "demo", *SMALL_DEMO,
        env={"BATCHML_QUEUE": f"sqlite:///{queue}"},
    )  # fmt: skip
    assert result.code == exitcodes.CONFIG and "drop --queue" in one_line(result)
    assert not queue.exists() and not (tmp_path / "new").exists()


def _readme_demo_lines() -> dict[str, str]:
    block = README.read_text().split("batchml demo finished in", 1)[1].split("```", 1)[0]
    return dict(re.findall(r"^  (final checkpoint|report|worker logs) +(.+)$", block, re.M))


def test_fresh_demo_in_its_default_root_deletes_only_what_it_made(tmp_path: Path) -> None:
    """Given the demo's default folder ./batchml-demo (carrying the marker) with a stale day
    and queue from an earlier demo and a notes file the user put there, when ``demo --fresh``
    runs from that folder's parent without --root, then it works in ./batchml-demo, the stale
    day is gone, the notes are kept, and the summary prints the paths the README shows (the old
    demo used ./batchml-data and deleted the whole root, notes included)."""
    demo = tmp_path / "batchml-demo"
    (demo / "datasets" / "training").mkdir(parents=True)
    (demo / MARKER).write_text(MARKER_TEXT)
    (demo / "datasets" / "training" / "2017-01-01.parquet").write_bytes(b"stale")
    (demo / "notes.txt").write_text("my notes\n")
    result = run_batchml("demo", "--fresh", *SMALL_DEMO, cwd=tmp_path)
    assert result.code == exitcodes.OK, result.err
    assert (demo / "notes.txt").read_text() == "my notes\n"
    assert not (demo / "datasets" / "training" / "2017-01-01.parquet").exists()
    assert (demo / "runs" / "default" / "report.json").exists()
    assert not (tmp_path / "batchml-data").exists()
    readme = _readme_demo_lines()
    assert set(readme) == {"final checkpoint", "report", "worker logs"}
    assert all(path.startswith("batchml-demo/") for path in readme.values())
    assert f"  report               {readme['report']}" in result.out
    assert f"  worker logs          {readme['worker logs']}" in result.out
    checkpoint = re.search(r"final checkpoint +(\S+)", result.out)
    assert checkpoint and checkpoint.group(1).startswith("batchml-demo/runs/default/checkpoints/")


def test_data_generate_refuses_to_overwrite_imported_days(tmp_path: Path) -> None:
    """Given imported days, when ``data generate`` would write other data over them, then it
    is refused naming the days and their count, and the bytes stay; with --force they are
    replaced (the old command overwrote them silently)."""
    root = imported_root(tmp_path)
    before = snapshot(root)
    result = run_batchml("--root", str(root), "data", "generate", *SMALL_DAYS, "--seed", "0")
    assert result.code == exitcodes.DEAD_ITEMS, result.err
    line = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "Traceback" not in result.err, result.err
    assert "3 day(s) already stored" in line[0] and "2018-04-01, 2018-04-02, 2018-04-03" in line[0]
    assert "--force" in line[0]
    assert snapshot(root) == before
    forced = run_batchml("--root", str(root), "data", "generate", *SMALL_DAYS, "--force")
    assert forced.code == exitcodes.OK, forced.err
    after = snapshot(root)
    assert after["notes.txt"] == before["notes.txt"]
    assert (
        after["datasets/training/2018-04-01.parquet"]
        != before["datasets/training/2018-04-01.parquet"]
    )


def test_data_generate_again_with_the_same_settings_is_allowed(tmp_path: Path) -> None:
    """Writing the same bytes again replaces nothing, so it needs no --force."""
    root = tmp_path / "root"
    args = ("--root", str(root), "data", "generate", *SMALL_DAYS)
    assert run_batchml(*args).code == exitcodes.OK
    before = snapshot(root)
    again = run_batchml(*args)
    assert again.code == exitcodes.OK, again.err
    assert snapshot(root) == before


def test_demo_without_fresh_keeps_days_it_did_not_simulate(tmp_path: Path) -> None:
    """Given a demo folder whose first day holds other data (put there by hand, or an earlier
    demo with other settings), when the demo runs without --fresh, then it is refused with the
    hint to pass --fresh, and the day's bytes stay (the old demo overwrote it)."""
    demo = tmp_path / "batchml-demo"
    day = demo / "datasets" / "training" / "2018-04-01.parquet"
    day.parent.mkdir(parents=True)
    (demo / MARKER).write_text(MARKER_TEXT)
    day.write_bytes(b"someone's data")
    result = run_batchml("--log-level", "ERROR", "demo", *SMALL_DEMO, cwd=tmp_path)
    assert result.code == exitcodes.DEAD_ITEMS, result.err
    line = one_line(result)
    assert "1 day(s) already stored" in line and "2018-04-01" in line and "--fresh" in line
    assert day.read_bytes() == b"someone's data"
