"""``--help`` of every command: a sentence for every option, clean metavars, no markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from batchml.cli.main import app
from tests.support.cli import run_cli


def _commands() -> list[tuple[str, Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(path: str, command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():  # a group's commands
            walk(f"{path} {name}".strip(), sub)

    walk("", root)
    return found


COMMANDS = _commands()


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: p or "batchml")
def test_every_option_has_a_sentence(path: str) -> None:
    command = dict(COMMANDS)[path]
    missing = [
        p.name
        for p in command.params
        if p.param_type_name == "option" and not (p.help or "").strip() and p.name != "help"
    ]
    assert missing == [], f"`batchml {path}`: options without help: {missing}"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: p or "batchml")
def test_help_has_clean_metavars_and_no_markup(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    result = run_cli(capsys, *path.split(), "--help")
    assert result.code == 0, result.err
    text = result.out
    assert not re.search(r"<(bool|str|int|float|Path|list\[)", text), text
    assert "``" not in text and ":func:" not in text and ":mod:" not in text, text


def test_model_and_kind_are_choices(capsys: pytest.CaptureFixture[str]) -> None:
    push = run_cli(capsys, "queue", "push", "--help").out
    assert "--model lgbm|sgd" in push
    imp = run_cli(capsys, "data", "import", "--help").out
    assert "--kind training|testing" in imp
    bad = run_cli(capsys, "--root", "/nonexistent-x", "queue", "push", "--model", "xgb")
    assert bad.code == 2 and "xgb" in bad.err and "lgbm" in bad.err
