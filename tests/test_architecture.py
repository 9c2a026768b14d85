"""The import rules of docs/design.md ("Layout and import rules"), read from the code itself.

Every module under src/batchml is parsed (``ast``, nothing imported) and each of its imports of
batchml is checked against the table: the generic packages never import the fraud workload,
the queue knows nothing of workers, tasks or settings, no two parts import each other in a
cycle, and no module grows past 400 lines but the few listed with their reason.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "batchml"

#: part -> the parts it may import (itself always allowed); the table of docs/design.md
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "exitcodes": set(),
    "beneath": {"errors"},
    "publish_modes": {"errors", "beneath"},
    "storage": {"errors", "beneath", "publish_modes"},
    "queue": {"errors", "storage"},
    "settings": {"errors", "queue", "storage", "publish_modes"},
    "tasks": {"errors", "queue", "storage", "batchml"},
    "worker": {"errors", "exitcodes", "queue", "storage", "settings", "tasks"},
    # batchml: __version__ (build_info)
    "observe": {"errors", "exitcodes", "queue", "worker", "batchml"},
    "report": {"errors", "queue", "storage", "observe", "worker", "batchml"},
    "web": {"errors", "queue", "storage", "observe", "report"},
    "fraud": {"errors", "exitcodes", "queue", "storage", "settings", "tasks", "worker", "observe",
              "report"},
    "cli": {"errors", "exitcodes", "queue", "storage", "publish_modes", "settings", "tasks",
            "worker", "observe", "report", "web", "fraud", "batchml"},
    "batchml": {"tasks"},  # the package's __init__: @batchml.task, imported on first use
    "__main__": {"cli"},
}  # fmt: skip
GENERIC = ("queue", "storage", "beneath", "publish_modes", "tasks", "worker", "observe",
           "report", "web", "settings", "errors", "exitcodes")  # fmt: skip

#: modules longer than the 400-line rule, each with its reason
LONG_MODULES = {
    "queue/sqlite/queue.py": "one SQL statement per WorkQueue operation, in one transaction each; "
    "the schema, file-system checks, dependencies and lineage reset are already beside it",
    "queue/redis/queue.py": "one method per WorkQueue operation, each a Lua call and its reply; "
    "URL, errors, scripts and keys are already beside it",
    "queue/base.py": "the whole WorkQueue contract (its docstrings are the spec the contract "
    "suite tests) with the records it returns",
    "fraud/features/engineered.py": "the handbook's windows as exact integer sums (so a day's "
    "table is the same bytes alone or in a block), each kernel with its tie rule; the cached "
    "tables are beside it in pipeline.py",
    "worker/loop.py": "the lease/run/settle loop; settling, heartbeats, retries, publication and "
    "data-loss checks are already beside it",
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """The batchml modules a file imports (lazily inside functions and TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "batchml"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "batchml":
                continue
            for alias in node.names:  # `from batchml.fraud import plan` imports batchml.fraud.plan
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "batchml"


EDGES = {name: _imports(path, name) for name, path in MODULES.items()}


def _violations(parts: set[str]) -> list[str]:
    bad = []
    for module, imported in EDGES.items():
        part = _part(module)
        if part not in parts:
            continue
        for target in sorted(imported):
            other = _part(target)
            if other != part and other not in ALLOWED[part]:
                bad.append(f"{module} imports {target} ({part} may not import {other})")
    return bad


def test_every_part_is_in_the_table() -> None:
    assert {_part(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("part", GENERIC)
def test_a_generic_package_never_imports_fraud(part: str) -> None:
    offenders = [
        f"{module} imports {target}"
        for module, imported in EDGES.items()
        if _part(module) == part
        for target in imported
        if _part(target) == "fraud"
    ]
    assert offenders == []


def test_each_part_imports_only_what_the_table_allows() -> None:
    assert _violations(set(ALLOWED)) == []


def test_the_queue_takes_only_publication_from_storage() -> None:
    for module, path in MODULES.items():
        if _part(module) != "queue":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "batchml.storage":
                assert [a.name for a in node.names] == ["Publication"], module


def test_only_open_queue_and_the_backend_itself_import_a_backend() -> None:
    for module, imported in EDGES.items():
        for target in imported:
            for backend in ("batchml.queue.sqlite", "batchml.queue.redis"):
                if target.startswith(backend) and not module.startswith(backend):
                    assert module == "batchml.queue", f"{module} imports {target}"


def test_no_import_cycle_between_parts() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in EDGES.items():
        for target in imported:
            if _part(target) != _part(module):
                graph[_part(module)].add(_part(target))
    graph["batchml"].discard("tasks")  # a lazy __getattr__ import, never at import time
    seen: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            assert seen.get(nxt) != 1, "cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_no_module_exceeds_400_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert set(long) == set(LONG_MODULES), long


def test_the_table_would_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a queue module importing the worker, or fraud, is reported."""
    fake = tmp_path / "m.py"
    fake.write_text("from batchml.worker.loop import Worker\nfrom batchml.fraud import plan\n")
    EDGES["batchml.queue._fake"] = _imports(fake, "batchml.queue._fake")
    try:
        bad = _violations({"queue"})
    finally:
        del EDGES["batchml.queue._fake"]
    assert bad == [
        "batchml.queue._fake imports batchml.fraud.plan (queue may not import fraud)",
        "batchml.queue._fake imports batchml.worker.loop (queue may not import worker)",
    ]


def _names_fraud_tasks(part: str) -> list[str]:
    """Modules of ``part`` whose code (docstrings and comments aside) names a fraud.* task."""
    found = []
    for module, path in MODULES.items():
        if _part(module) != part:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and value.startswith("fraud.") and " " not in value:
                found.append(f"{module}: {value!r}")
    return found


@pytest.mark.parametrize("part", GENERIC)
def test_a_generic_package_names_no_fraud_task(part: str) -> None:
    """report/ and web/ included: they select lineage records by their lineage field, and the
    fraud workload adds its parts through batchml.report.sections."""
    assert _names_fraud_tasks(part) == []
