"""One source for the Redis key layout: keys.py; the Lua scripts may name only what it lists.

The scripts never build a key name (they receive them as KEYS, bound by part in one generated
line), but they name the parts: ``K.lineage_head``, ``K.state[...]``, the prelude's table of
keys and its list of state indexes. Each of those is checked against
:mod:`batchml.queue.redis.keys` both ways, so a part added, renamed or dropped on one side only
fails here instead of in production.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import batchml.queue.redis
from batchml.queue.redis.keys import PARTS, SCRIPT_KEYS, STATE_PARTS

LUA = Path(batchml.queue.redis.__file__).parent / "lua"
PRELUDE = (LUA / "prelude.lua").read_text()


def _table_parts(prelude: str) -> set[str]:
    """The parts of the prelude's key table: its ``--   <part>   <type> ...`` comment lines."""
    table = re.findall(r"^--   ([a-z][\w:|-]*) +(?:hash|zsets?|string|list)\b", prelude, re.M)
    parts: set[str] = set()
    for entry in table:
        head, _, states = entry.partition(":")
        parts |= {f"{head}:{s}" for s in states.split("|")} if states else {entry}
    return parts


def _named_parts(text: str) -> set[str]:
    """The parts a Lua text names: ``K.part`` (dashes spelt ``_``), ``K.state.<s>``."""
    names = {n.replace("_", "-") for n in re.findall(r"\bK\.(\w+)", text) if n != "state"}
    return names | {f"state:{s}" for s in re.findall(r"\bK\.state\.(\w+)", text)}


def test_the_prelude_key_table_is_the_one_of_keys_py() -> None:
    assert _table_parts(PRELUDE) == set(PARTS)


def test_the_prelude_indexes_exactly_the_state_parts() -> None:
    indexed = re.search(r"^local INDEXED = \{(.*)\}$", PRELUDE, re.M)
    assert indexed
    states = set(re.findall(r"(\w+) = true", indexed.group(1)))
    assert {f"state:{s}" for s in states} == set(STATE_PARTS)
    assert set(STATE_PARTS) <= set(PARTS)


@pytest.mark.parametrize("path", sorted(LUA.glob("*.lua")), ids=lambda p: p.name)
def test_every_key_a_script_names_is_a_part(path: Path) -> None:
    named = _named_parts(path.read_text())
    assert named <= set(PARTS), sorted(named - set(PARTS))
    if path.stem in SCRIPT_KEYS:  # and is one the script receives
        assert named <= set(SCRIPT_KEYS[path.stem]), sorted(named - set(SCRIPT_KEYS[path.stem]))


def test_every_script_has_its_keys_and_every_part_is_used() -> None:
    scripts = {p.stem for p in LUA.glob("*.lua")} - {"prelude"}
    assert scripts == set(SCRIPT_KEYS)
    used = {part for parts in SCRIPT_KEYS.values() for part in parts}
    assert used == set(PARTS)
    everything = "\n".join(p.read_text() for p in LUA.glob("*.lua"))
    named = _named_parts(everything) | {p for p in PARTS if p.startswith("state:")}
    assert named == set(PARTS)
