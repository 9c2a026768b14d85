"""The checks for a DataFrame's blocks and its BlockManager, in both layouts pandas pickles them.

A block is made by pandas' block constructor (``_unpickle_block``, or ``partial(new_block,
ndim=n)`` as pandas 1.3 wrote it) from its values and its placement, the frame columns it holds.
pandas trusts placements: a block placed outside its frame, or two blocks on one column, would
read memory out of bounds later. So a manager is only made of blocks that cover its columns
exactly once, each as long as its index.

The manager comes in one of two layouts:

* ``BlockManager(blocks, [columns, index])``, a REDUCE (pandas 1.3 and later; the tutorial's files);
* ``BlockManager()`` by NEWOBJ, then a BUILD with the state older pandas wrote, as in the Fraud
  Detection Handbook's daily files (from pandas 1.0: their frame's state still names the manager
  ``_data``, renamed ``_mgr`` in pandas 1.1): ``(axes, values, items, {"0.14.1": {"axes": axes,
  "blocks": [{"values": v, "mgr_locs": placement}, ...]}})``. pandas reads only the dict; the rest
  must agree with it (the very same axes list and value arrays, each block's own column labels),
  and the values must be 2-d NumPy arrays, the only kind a frame of plain columns has there.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.internals.blocks import Block

from batchml.fraud.data.pickle_allowlist import (
    Budget,
    Refused,
    Result,
    arity,
    array_of,
    brief,
    calls,
    integer,
    objects,
    role_of,
)

NUMPY_KINDS = "biufcMmO"


def _extension(value: object, ndims: tuple[int, ...] = (1,)) -> Any:
    """An already-built pandas array of an allowed type (one that may back a column)."""
    allowed = tuple(objects()[n] for n in ("DatetimeArray", "TimedeltaArray", "Categorical"))
    allowed += (objects()["StringArray"], objects()["ArrowStringArray"])
    if type(value) not in allowed or value.ndim not in ndims:  # type: ignore[attr-defined]
        raise Refused(f"a {type(value).__name__} where a column's values were due")
    return value


def column_values(value: object, ndims: tuple[int, ...]) -> Any:
    """A NumPy array of a plain kind, or an allowed pandas array: what may back a column."""
    if type(value) is np.ndarray:
        return array_of(value, NUMPY_KINDS, ndims)
    return _extension(value, ndims)


def _placement_length(placement: object) -> int:
    if type(placement) is slice:
        start = integer(placement.start, "a block placement start")
        stop = integer(placement.stop, "a block placement stop")
        step = 1 if placement.step is None else integer(placement.step, "a placement step", 1)
        return len(range(start, stop, step))
    locs = array_of(placement, "iu")
    if len(locs) and (locs.min() < 0 or locs.max() > 2**31):
        raise Refused("a block placement outside the frame")
    return len(locs)


def _unpickle_block(args: tuple[Any, ...], ndim: object, budget: Budget) -> Block:
    values, placement = args
    integer(ndim, "a block ndim", 1, 2)
    values = column_values(values, (1, 2))
    length = _placement_length(placement)
    if length != (values.shape[0] if values.ndim == 2 else 1):
        raise Refused(f"a block of {values.shape} placed on {length} columns")
    budget.charge(values.nbytes, "a block")
    return objects()["_unpickle_block"](values, placement, ndim)


@calls("_unpickle_block")
def _block(args: tuple[Any, ...], budget: Budget) -> Result:
    values, placement, ndim = arity(args, 3, "pandas _unpickle_block")
    return _unpickle_block((values, placement), ndim, budget), False


def call_block_partial(
    func: functools.partial[Any], args: tuple[Any, ...], budget: Budget
) -> Result:
    """``partial(new_block, ndim=n)(values, placement)``: how pandas <= 1.3 pickled blocks."""
    if role_of(func.func) != "_unpickle_block" or func.args or set(func.keywords) != {"ndim"}:
        raise Refused("a call to a functools.partial other than pandas' block constructor")
    values_placement = arity(args, 2, "pandas new_block")
    return _unpickle_block(values_placement, func.keywords["ndim"], budget), False


def _index(value: object) -> pd.Index:
    if type(value) not in (pd.Index, pd.RangeIndex):
        raise Refused(f"a {type(value).__name__} where an Index was due")
    return value  # type: ignore[return-value]


def _axes(axes: object) -> tuple[pd.Index, pd.Index]:
    if type(axes) not in (tuple, list) or len(axes) != 2:  # type: ignore[arg-type]
        raise Refused("BlockManager axes other than [columns, index]")
    return _index(axes[0]), _index(axes[1])  # type: ignore[index]


def _check_placed(blocks: list[Any], columns: pd.Index, index: pd.Index, budget: Budget) -> None:
    """Each block as long as the index, and together on every column exactly once."""
    budget.charge(16 * (len(columns) + len(blocks)), "a BlockManager")  # its block maps
    placed = []
    for block in blocks:
        if not isinstance(block, Block):
            raise Refused(f"a {type(block).__name__} among a frame's blocks")
        if block.shape[1:] != (len(index),):
            raise Refused(f"a block of {block.shape[1:]} rows in a frame of {len(index)} rows")
        placed.append(block.mgr_locs.as_array)
    locs = np.sort(np.concatenate(placed)) if placed else np.zeros(0, dtype=np.intp)
    if not np.array_equal(locs, np.arange(len(columns))):
        raise Refused("blocks that do not cover the frame's columns exactly once")


@calls("BlockManager")
def _block_manager(args: tuple[Any, ...], budget: Budget) -> Result:
    blocks, axes = arity(args, 2, "BlockManager")
    if type(blocks) not in (tuple, list):
        raise Refused("BlockManager with arguments other than (blocks, [columns, index])")
    columns, index = _axes(axes)
    _check_placed(list(blocks), columns, index, budget)
    return objects()["BlockManager"](tuple(blocks), [columns, index]), False


_OLD_STATE = "a BlockManager state other than older pandas' (axes, values, items, {'0.14.1': ...})"


def build_old_manager(manager: Any, state: object, budget: Budget) -> None:
    """BUILD of a BlockManager made by NEWOBJ, from the state older pandas wrote."""
    if type(state) is not tuple or len(state) != 4:
        raise Refused(_OLD_STATE)
    axes, values, items, extra = state
    inner = extra.get("0.14.1") if type(extra) is dict and set(extra) == {"0.14.1"} else None
    if type(inner) is not dict or set(inner) != {"axes", "blocks"} or inner["axes"] is not axes:
        raise Refused(_OLD_STATE)
    parts = inner["blocks"]
    if type(axes) is not list or not type(parts) is type(values) is type(items) is list:
        raise Refused(_OLD_STATE)
    if not len(parts) == len(values) == len(items):
        raise Refused(f"a BlockManager state of {len(parts)} blocks, {len(values)} values")
    columns, index = _axes(axes)
    blocks = []
    for part, value, labels in zip(parts, values, items, strict=True):
        if type(part) is not dict or set(part) != {"values", "mgr_locs"}:
            keys = list(part) if type(part) is dict else type(part).__name__
            raise Refused(f"a block state of {brief(keys)} (not {{'values', 'mgr_locs'}})")
        if part["values"] is not value or type(labels) is not pd.Index:
            raise Refused("a BlockManager state whose values or items disagree with its blocks")
        array = array_of(value, NUMPY_KINDS, (2,))
        blocks.append(_unpickle_block((array, part["mgr_locs"]), 2, budget))
    _check_placed(blocks, columns, index, budget)
    for block, labels in zip(blocks, items, strict=True):
        if not labels.equals(columns[block.mgr_locs.indexer]):
            raise Refused("a BlockManager state whose items are not its blocks' columns")
    # every part of the state is now checked, and the blocks pandas makes from it again are
    # the ones just made: the manager is filled in place, as the memo already holds it
    manager.__setstate__(state)
