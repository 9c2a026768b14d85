"""Clean metavars in ``--help``: ``TEXT``, ``INTEGER``, ``PATH``, ``lgbm|sgd``; never ``<bool>``.

Recent Typer versions print a parameter's Python annotation as its type (``<str>``, ``<bool>``,
``<list[Path]>``). :func:`install` makes them print what Click prints instead: the value's kind
in capitals (a list option is simply repeatable, as its help says), the choices of an enum, and
nothing for a flag. With a Typer that has no such annotation display, nothing is changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

_NAMES = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH", bool: ""}


def metavar(param: Any, ctx: Any) -> str:
    """The value's kind as Click names it, from the parameter's annotation."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "is_choice", False):
        return "|".join(str(getattr(c, "value", c)) for c in descriptor.choices or ())
    annotation = getattr(descriptor, "annotation", None)
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and annotation in _NAMES:
        return _NAMES[annotation]
    name = getattr(getattr(param, "type", None), "name", "") or "value"
    return str(name).upper()


def install() -> None:
    """Patch Typer's parameter display once (idempotent)."""
    try:
        from typer.core import _TyperParameter
    except ImportError:  # an older Typer: Click's own metavars are already shown
        return
    if hasattr(_TyperParameter, "display_type"):
        _TyperParameter.display_type = metavar  # type: ignore[method-assign,assignment]
