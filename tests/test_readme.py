"""Every ``bash`` block of the README runs as written, and prints what the README says.

The README's fences mean: ```` ```bash ```` a block a user runs from a clone of the repository
after ``make venv`` (this test runs each in a fresh folder of its own, with ``.venv/bin/batchml``
and ``tests/data`` there as in a clone); ```` ```sh ```` a block that needs a cluster, Docker or a
Redis server of yours (not run here; tests/deploy/test_deploy.py renders and checks the manifests).
An HTML comment on the line before a fence steers this test:

* ``<!-- readme-test: skip (REASON) -->`` before a ``bash`` block: not run, for the reason
  given (kept rare: a block that starts a server, or runs this very test suite);
* ``<!-- readme-test: output -->`` before a ``text`` block: what the ``bash`` block above it
  prints on stdout. Each of its lines must match an output line, in order (other lines may
  come between); ``⋯`` in a line stands for anything (a path, a time, an id), and a line that
  is only ``⋯`` stands for lines left out.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli import REPO, batchml_env

README = REPO / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
ELIDED = "⋯"


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directive: str = ""
    expected: list[str] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the directive of the line before each."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        previous = lines[start - 1] if start else ""
        directive = m.group(1) if (m := DIRECTIVE.search(previous)) else ""
        found.append(Block(start + 1, fence.group(1), "\n".join(body) + "\n", directive))
        i += 1
    for before, block in itertools.pairwise(found):
        if block.directive == "output":
            assert before.lang == "bash", f"README line {block.line}: output of a non-bash block"
            before.expected = block.text.splitlines()
    return found


def matches(pattern: str, line: str) -> bool:
    parts = [re.escape(" ".join(p.split())) for p in pattern.split(ELIDED)]
    return re.fullmatch(r".*?".join(parts), " ".join(line.split())) is not None


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines not found in ``output`` in order (``⋯`` lines are skipped)."""
    lines = output.splitlines()
    at, missing = 0, []
    for want in expected:
        if want.strip() == ELIDED or not want.strip():
            continue
        for k in range(at, len(lines)):
            if matches(want, lines[k]):
                at = k + 1
                break
        else:
            missing.append(want)
    return missing


ALL = blocks(README.read_text(encoding="utf-8"))
BASH = [b for b in ALL if b.lang == "bash"]


def a_clone(folder: Path) -> None:
    """What a clone after ``make venv`` has that the README's blocks use."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "batchml"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m batchml "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (folder / "tests").mkdir()
    (folder / "tests" / "data").symlink_to(REPO / "tests" / "data")


def test_the_readme_has_runnable_blocks_and_says_what_the_fences_mean() -> None:
    assert len([b for b in BASH if not b.directive.startswith("skip")]) >= 2
    for block in BASH:
        if block.directive.startswith("skip"):
            assert re.fullmatch(r"skip \(.{10,}\)", block.directive), (
                f"README line {block.line}: a skip says why: skip (REASON)"
            )
    for block in ALL:
        assert "../" not in block.text, f"README line {block.line}: a path outside the clone"
    text = README.read_text(encoding="utf-8")
    assert "`sh` blocks" in text and "`bash` block" in text


@pytest.mark.parametrize("block", BASH, ids=lambda b: f"line{b.line}")
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.directive.startswith("skip"):
        pytest.skip(f"README line {block.line}: {block.directive}")
    a_clone(tmp_path)
    env = batchml_env({"PATH": f"{tmp_path / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    where = f"README line {block.line}"
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    missing = missing_lines(block.expected, done.stdout)
    assert missing == [], f"{where}: shown in the README, not printed: {missing}\n{done.stdout}"


def test_the_matcher_fails_on_a_wrong_claim() -> None:
    out = "wrote 24 daily datasets: 2018-04-01 … 2018-04-24\nqueue sqlite:////tmp/x/queue.db\n"
    assert missing_lines(["queue sqlite:///⋯/queue.db", "⋯"], out) == []
    assert missing_lines(["wrote 25 daily datasets: ⋯"], out) == ["wrote 25 daily datasets: ⋯"]
    # in order: a line shown before another must come before it
    assert missing_lines(["queue ⋯", "wrote ⋯"], out) == ["wrote ⋯"]
