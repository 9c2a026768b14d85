"""Run the batchml CLI in-process, as a user would type it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from batchml.cli.main import main


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
