"""The task registry in-process: entry points, --tasks modules, validators, and the fraud
tasks' payload checks (the attack itself, with real processes, is test_tasks_allowlist.py)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest

import batchml
from batchml.errors import (
    ConfigError,
    PathEscapeError,
    PayloadError,
    PermanentError,
    UnknownTask,
    is_permanent,
)
from batchml.fraud import plan
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.tasks import check_features, check_score, check_train
from batchml.queue.sqlite.queue import SqliteQueue
from batchml.storage import Storage
from batchml.tasks import ENTRY_POINT_GROUP, TaskRegistry, builtin
from batchml.tasks.registry import module_tasks, parse_modules

BUILTINS = ["fraud.features", "fraud.score", "fraud.train", "noop", "sleep"]


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_the_builtins_are_batchmls_own_entry_points() -> None:
    ours = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.dist and e.dist.name == "batchml"]
    assert sorted(e.name for e in ours) == BUILTINS
    registry = TaskRegistry.load()
    assert set(BUILTINS) <= set(registry.names())
    assert registry.get("noop")[0] is builtin.noop


def test_loading_the_registry_imports_no_task_module() -> None:
    """Entry points are named, not loaded: a worker of user tasks never imports the fraud
    stack, and a built-in is imported only when first run."""
    code = (
        "import sys; from batchml.tasks import TaskRegistry; r = TaskRegistry.load(); "
        "print('batchml.fraud.tasks' in sys.modules, 'pandas' in sys.modules); "
        "r.get('noop'); print('batchml.fraud.tasks' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_parse_modules_splits_commas_and_repeats() -> None:
    assert parse_modules(None) == ()
    assert parse_modules(["a.b, c", "d,,", " a.b "]) == ("a.b", "c", "d")


def test_the_decorator_returns_the_function_and_records_its_validator() -> None:
    def check(payload: dict[str, Any], storage: Storage) -> None: ...

    def f(ctx: object, payload: dict[str, Any]) -> None: ...

    assert batchml.task(f) is f
    assert batchml.task(validate=check)(f) is f
    assert f.__batchml_task__.validate is check  # type: ignore[attr-defined]


def test_a_module_offers_only_its_own_decorated_functions() -> None:
    names = set(module_tasks("tests.sample_tasks"))
    assert "tests.sample_tasks:write_output" in names
    assert "tests.sample_tasks:validated_write" in names
    assert "tests.sample_tasks:undecorated" not in names  # no @task
    assert "tests.sample_tasks:imported_sleep" not in names  # a @task, defined elsewhere
    assert not any(n.endswith(":_needs_a_name") for n in names)


@pytest.mark.parametrize("module", ["subprocess", "os", "pydoc", "batchml.storage"])
def test_a_module_without_decorated_functions_is_a_configuration_error(module: str) -> None:
    with pytest.raises(ConfigError, match=f"--tasks {module}: the module defines no task"):
        TaskRegistry.load([module])


def test_a_module_that_cannot_be_imported_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="--tasks no_such_module_xyz: cannot import it"):
        TaskRegistry.load(["no_such_module_xyz"])


def test_unknown_names_are_refused_without_importing_them() -> None:
    registry = TaskRegistry.load(points=[ep("noop", "batchml.tasks.builtin:noop")])
    for name in ("os:system", "subprocess:getoutput", "pydoc:pipepager", "fraud.train", ""):
        with pytest.raises(UnknownTask):
            registry.prepare({"task": name}, Storage("/tmp"))
    with pytest.raises(UnknownTask, match="names no task"):
        registry.prepare({"x": 1}, Storage("/tmp"))
    with pytest.raises(UnknownTask) as info:
        registry.get("a" * 500)
    assert len(str(info.value)) < 600 and "Registered tasks: noop" in str(info.value)


def test_two_packages_claiming_one_name_is_a_configuration_error() -> None:
    same = [ep("x", "a:f"), ep("x", "a:f")]
    assert TaskRegistry.load(points=same).names() == ["x"]
    with pytest.raises(ConfigError, match="'x' is registered twice"):
        TaskRegistry.load(points=[ep("x", "a:f"), ep("x", "b:g")])


def test_an_entry_point_that_fails_to_load_is_a_permanent_error_naming_it() -> None:
    registry = TaskRegistry.load(points=[ep("broken", "no_such_module_xyz:f"), ep("x", "os:sep")])
    with pytest.raises(ConfigError, match=r"task 'broken' .*cannot load no_such_module_xyz:f"):
        registry.get("broken")
    with pytest.raises(ConfigError, match="is not callable"):
        registry.get("x")


def test_an_empty_group_says_batchml_may_not_be_installed() -> None:
    with pytest.raises(UnknownTask, match=r"no 'batchml\.tasks' entry points are installed"):
        TaskRegistry.load(points=[]).get("noop")


def test_the_errors_that_retrying_cannot_fix_are_permanent() -> None:
    for error in (UnknownTask, PathEscapeError, ConfigError, PayloadError):
        assert issubclass(error, PermanentError) and is_permanent(error("x"))
    assert not is_permanent(ValueError("x")) and not is_permanent(KeyError("x"))


# -- the fraud tasks' validators ------------------------------------------------------------


def test_the_payloads_plan_builds_pass_their_validators(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    spec = FeatureSpec()
    check_features(plan.features_item(spec, "2018-04-01").payload, storage)
    queue = SqliteQueue(tmp_path / "q.db")
    items = plan.training_items(
        queue, ["2018-04-01", "2018-04-02"], run="r", test=["datasets/testing/t.parquet"]
    )
    for item in items:
        check = check_train if item.payload["task"] == "fraud.train" else check_features
        check(item.payload, storage)
    [score] = plan.scoring_items([("t", "datasets/testing/t.parquet")], run="r", version=2)
    check_score(score.payload, storage)


@pytest.mark.parametrize(
    ("check", "payload", "error", "message"),
    [
        (check_score, {"path": "../../etc/passwd"}, PathEscapeError, "dataset path"),
        (check_score, {"path": "/etc/passwd"}, PathEscapeError, "is absolute"),
        (check_score, {"path": "a.parquet", "dataset": "d"}, PayloadError, "'version'"),
        (check_score, {"path": "a", "dataset": "d", "version": True}, PayloadError, "'version'"),
        (check_score, {"path": "a", "version": 1}, PayloadError, "'dataset' must be a str"),
        (check_score, {"path": "a", "version": 1, "dataset": "../../x"}, PathEscapeError, "'..'"),
        (check_train, {"dataset": "d"}, PayloadError, "'path' must be a str (missing)"),
        (check_train, {"path": "a", "dataset": "d", "test": ["../t"]}, PathEscapeError, "test"),
        (check_train, {"path": "a", "dataset": "d", "test": "t"}, PayloadError, "list of paths"),
        (check_train, {"path": "a", "dataset": "../../../x"}, PathEscapeError, "'..'"),
        (check_train, {"path": "a", "dataset": "d", "model": {"kind": "x"}}, PayloadError, "kind"),
        (check_train, {"path": "a", "dataset": "d", "features": {"w": 1}}, PayloadError, "spec"),
        (check_features, {"dataset": "yesterday"}, PayloadError, "YYYY-MM-DD"),
        (check_features, {"dataset": "2018-04-01", "path": "../x"}, PathEscapeError, "'..'"),
        (check_features, {}, PayloadError, "'dataset' must be a str (missing)"),
    ],
)
def test_fraud_validators_refuse_bad_payloads(
    tmp_path: Path, check: Any, payload: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(payload, Storage(tmp_path))


def test_a_validator_that_trips_over_the_payload_refuses_it_permanently() -> None:
    """A validator's KeyError (a key the payload lacks) is a PayloadError, not a retry."""

    def check(payload: dict[str, Any], storage: Storage) -> None:
        storage.resolve(payload["path"])

    def f(ctx: object, payload: dict[str, Any]) -> None: ...

    module = type(sys)("validated_module")
    module.f = batchml.task(validate=check)(f)  # type: ignore[attr-defined]
    f.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        registry = TaskRegistry.load([module.__name__], points=[])
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(PayloadError, match="validated_module:f payload refused by its validator"):
        registry.prepare({"task": "validated_module:f"}, Storage("/tmp"))
    assert registry.prepare({"task": "validated_module:f", "path": "a"}, Storage("/tmp")) is f


def test_a_standard_library_name_is_not_told_to_register_its_module() -> None:
    """`--tasks os` is itself refused (no @batchml.task there): the refusal must not suggest it."""
    registry = TaskRegistry.load(points=[ep("noop", "batchml.tasks.builtin:noop")])
    with pytest.raises(UnknownTask) as info:
        registry.get("os:system")
    message = str(info.value)
    assert "--tasks os" not in message
    assert "'os' is a standard-library module" in message and "Registered tasks: noop" in message
    with pytest.raises(UnknownTask, match=r"here --tasks my_tasks\)"):
        registry.get("my_tasks:run")
