"""The model lineage v0 → v1 → … → vn on storage: checkpoint names, saving and resuming.

The head itself (version, checkpoint, dataset) lives in the queue backend and moves by
compare-and-set with the item's completion (docs/design.md, "Model lineage"). This module turns a
head into a model: it rolls the head's checkpoint publication forward if its writer died
between commit and rename, verifies the sha256, and restores the state arrays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from batchml.errors import ConfigError, StorageError
from batchml.fraud.models import checkpoint
from batchml.fraud.models.kinds import DEFAULT_KIND
from batchml.fraud.models.model import MODEL_KINDS, make_model, model_kind_of, model_params
from batchml.queue.base import LineageHead
from batchml.storage import Storage


@dataclass(frozen=True)
class ModelConfig:
    kind: str = DEFAULT_KIND
    params: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    def resolved(self) -> ModelConfig:
        """The same model with every parameter spelled out (defaults included).

        Items carry resolved configs, so a later change of a kind's defaults cannot change
        the model of a run already queued."""
        params = model_params(make_model(self.kind, dict(self.params)))
        return ModelConfig(kind=self.kind, params=tuple(sorted(params.items())))

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ModelConfig:
        if not data:
            return cls()
        return cls(
            kind=str(data.get("kind", DEFAULT_KIND)),
            params=tuple(sorted((data.get("params") or {}).items())),
        )


def checkpoint_path(storage: Storage, run: str, version: int, dataset: str) -> str:
    return storage.run_path(run, "checkpoints", f"v{version:04d}-{dataset}.npz")


def _verified(storage: Storage, head: LineageHead) -> tuple[bytes, str]:
    """The bytes of the head's checkpoint (publication rolled forward, sha256 verified)."""
    if head.checkpoint is None:
        raise ConfigError(f"run {head.run!r} v{head.version} has no checkpoint")
    path = storage.publish(head.checkpoint)
    return checkpoint.read_verified(path, head.checkpoint.sha256), str(path)


def _read(storage: Storage, head: LineageHead) -> tuple[dict[str, Any], dict[str, Any]]:
    """State arrays and metadata of the head's checkpoint, publication rolled forward."""
    return checkpoint.loads(*_verified(storage, head))


def _restore(
    head: LineageHead, config: ModelConfig, inputs: tuple[str, ...],
    state: dict[str, Any], meta: dict[str, Any],
) -> Any:  # fmt: skip
    model = make_model(config.kind, dict(config.params))
    _check(head, config, inputs, meta)
    try:
        model.set_state(state)
    except (KeyError, ValueError, TypeError) as exc:
        raise StorageError(
            f"lineage {head.run!r} v{head.version}: its checkpoint holds no {config.kind} "
            f"state ({exc}); restore the file, or reset the lineage (batchml lineage reset)"
        ) from None
    return model


def _check(
    head: LineageHead, config: ModelConfig, inputs: tuple[str, ...], meta: dict[str, Any]
) -> None:
    """ConfigError unless the checkpoint's kind, parameters and inputs are the item's."""
    params = model_params(make_model(config.kind, dict(config.params)))
    if meta.get("kind") != config.kind or meta.get("params") != params:
        raise ConfigError(
            f"lineage {head.run!r} v{head.version} was trained as {meta.get('kind')} "
            f"{meta.get('params')}, but this item asks for {config.kind} {params}; "
            "start a new run (--run NAME) to change the model"
        )
    if tuple(meta.get("inputs", ())) != inputs:
        raise ConfigError(
            f"lineage {head.run!r} v{head.version} was trained on other input features; "
            "start a new run (--run NAME) to change the features"
        )


def load_head(
    storage: Storage, head: LineageHead, config: ModelConfig, inputs: tuple[str, ...]
) -> tuple[Any, dict[str, Any]]:
    """The model at ``head``, checked against config and inputs.

    At version 0 (no checkpoint) it is a fresh, unfitted model: it must learn a batch before
    it can score (its ``predict_proba`` raises NotFittedError)."""
    if head.checkpoint is None:
        return make_model(config.kind, dict(config.params)), {}
    state, meta = _read(storage, head)
    return _restore(head, config, inputs, state, meta), meta


@dataclass(frozen=True)
class _Kept:
    sha256: str
    model: Any
    inputs: tuple[str, ...]


_kept: list[_Kept] = []  # the model of the last checkpoint this process saved, if any
_kept_lock = threading.Lock()


def keep(model: Any, inputs: tuple[str, ...], sha256: str) -> None:
    """Keep ``model`` in memory as the model of the checkpoint (sha256 ``sha256``) that this
    process just staged for it, for :func:`continue_head` of the next version.

    Only the built-in kinds are kept: their tests show that continuing in memory and after a
    checkpoint round trip give the same bytes; a user kind is restored from its file."""
    if type(model) not in MODEL_KINDS.values():
        return
    with _kept_lock:
        _kept[:] = [_Kept(sha256, model, inputs)]


def forget_kept() -> None:
    """Drop the model kept by :func:`keep` (tests use it: a cold worker)."""
    with _kept_lock:
        _kept.clear()


def continue_head(
    storage: Storage, head: LineageHead, config: ModelConfig, inputs: tuple[str, ...]
) -> Any:
    """The model of :func:`load_head`, for a step that trains it further (and changes it).

    The head's checkpoint is read and its sha256 verified as always; when it is the one this
    process saved last (:func:`keep`), the model kept in memory is handed over instead of
    being restored from those bytes, which hold its very state (continuing in memory and
    after a round trip give the same bytes). It is handed over once: a second call, e.g. a
    retry after a failed step, restores from the file."""
    with _kept_lock:
        kept = _kept.pop() if _kept else None
    if head.checkpoint is None or kept is None or kept.sha256 != head.checkpoint.sha256:
        return load_head(storage, head, config, inputs)[0]
    _verified(storage, head)
    meta = {"kind": model_kind_of(kept.model), "params": model_params(kept.model)}
    _check(head, config, inputs, {**meta, "inputs": list(kept.inputs)})
    return kept.model


def load_version(
    storage: Storage, head: LineageHead, inputs: tuple[str, ...]
) -> tuple[Any, dict[str, Any]]:
    """The model of a trained version, of the kind and parameters its checkpoint records.

    For readers (scoring, evaluation) that use a version as it is rather than continue it."""
    state, meta = _read(storage, head)
    config = ModelConfig(kind=str(meta["kind"]), params=tuple(sorted(meta["params"].items())))
    return _restore(head, config, inputs, state, meta), meta


def save_bytes(model: Any, inputs: tuple[str, ...], lineage: dict[str, Any]) -> tuple[bytes, str]:
    """Checkpoint bytes and the params digest of a model."""
    state = model.get_state()
    meta = {
        "format": checkpoint.FORMAT,
        "kind": model_kind_of(model),
        "params": model_params(model),
        "inputs": list(inputs),
        "versions": checkpoint.library_versions(),
        "lineage": lineage,
    }
    layout = getattr(model, "state_layout", None)
    data = checkpoint.dumps(state, meta, layout() if callable(layout) else None)
    return data, checkpoint.params_digest(state)
