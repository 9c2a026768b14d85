"""Run the batchml CLI as a user would type it: in-process (``run_cli``) or as a real child
process (``run_batchml``, ``start_batchml``: exit codes, signals and output exactly as a shell
sees them)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchml.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return Result(code=int(code) if code is not None else 0, out=captured.out, err=captured.err)


def batchml_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours without any BATCHML_* setting, tests/ importable.

    The checkout's own ``src`` comes first, so a child runs the code under test even when the
    venv's batchml is installed from another checkout (a second worktree sharing one venv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHML_")}
    path = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return {**env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def batchml_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchml", *args]


def run_batchml(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 90
) -> Result:
    """``batchml ARGS`` in a child process; its exit code, stdout and stderr."""
    done = subprocess.run(
        batchml_argv(*args), cwd=cwd, env=batchml_env(env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    return Result(code=done.returncode, out=done.stdout, err=done.stderr)


def start_batchml(
    *args: str, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``batchml ARGS`` started in a child process, stdout and stderr into ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            batchml_argv(*args), cwd=cwd, env=batchml_env(env), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
