"""The model kinds' names, importable without loading scikit-learn or LightGBM (the CLI's
options need them at start-up; ``batchml.fraud.models.model.MODEL_KINDS`` maps them to classes).

Besides the built-in kinds, a user's own scikit-learn estimator can train a lineage once it is
registered with :func:`model_kind` in a module the worker imports (and ``queue add`` too, which
refuses a train item of an unknown kind). A queue item names a kind, never a class: nothing a
queue writer sends is imported. The estimator must have ``partial_fit(X, y, classes=None)``,
``predict_proba`` (with a ``classes_`` that holds the fraud label 1), ``get_params`` whose
values are JSON, and — because a checkpoint is never a pickle — the state protocol::

    get_state(self) -> dict[str, numpy.ndarray]   # learned state as numeric arrays
    set_state(self, state: dict[str, numpy.ndarray]) -> None   # restore it on a fresh instance

Arrays of Python objects are refused when the checkpoint is written. An estimator without
``get_state``/``set_state`` cannot be registered: only kinds that can checkpoint train.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar


class ModelKind(StrEnum):
    """The choices of ``--model``."""

    LGBM = "lgbm"
    SGD = "sgd"


DEFAULT_KIND = "lgbm"
KIND_NAMES = tuple(kind.value for kind in ModelKind)

_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_PROTOCOL = ("partial_fit", "predict_proba", "get_params", "get_state", "set_state")
_user: dict[str, type[Any]] = {}
C = TypeVar("C", bound=type[Any])


def model_kind(name: str) -> Callable[[C], C]:
    """Register an estimator class as model kind ``name``; the class is returned unchanged.

    TypeError if the class lacks the protocol above; ValueError if ``name`` is not a lowercase
    name or is taken (a built-in kind, or another class)."""

    def register(cls: C) -> C:
        if not _NAME.fullmatch(name):
            raise ValueError(f"model kind name {name!r}: use lowercase letters, digits, _ . -")
        if name in KIND_NAMES or _user.get(name, cls) is not cls:
            raise ValueError(f"model kind {name!r} is already registered")
        missing = [m for m in _PROTOCOL if not callable(getattr(cls, m, None))]
        if missing:
            raise TypeError(
                f"model kind {name!r}: {cls.__name__} has no {', '.join(missing)}; a kind "
                "needs partial_fit, predict_proba, get_params and the checkpoint state "
                "protocol get_state()/set_state(state) (numeric arrays: never a pickle)"
            )
        _user[name] = cls
        return cls

    return register


def user_kinds() -> dict[str, type[Any]]:
    """The registered user kinds, by name."""
    return dict(_user)


def known_kinds() -> tuple[str, ...]:
    """Every kind a train item may name: built-in and registered."""
    return tuple(sorted({*KIND_NAMES, *_user}))


def unregister(name: str) -> None:
    """Forget a user kind (tests use it)."""
    _user.pop(name, None)
