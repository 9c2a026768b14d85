"""The model lineage v0 → v1 → … → vn on storage: checkpoint names, saving and resuming.

The head itself (version, checkpoint, dataset) lives in the queue backend and moves by
compare-and-set with the item's completion (docs/design.md, "Model lineage"). This module turns a
head into a model: it rolls the head's checkpoint publication forward if its writer died
between commit and rename, verifies the sha256, and restores the state arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchml.errors import ConfigError, StorageError
from batchml.fraud.models import checkpoint
from batchml.fraud.models.kinds import DEFAULT_KIND
from batchml.fraud.models.model import make_model, model_kind_of, model_params
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


def _read(storage: Storage, head: LineageHead) -> tuple[dict[str, Any], dict[str, Any]]:
    """State arrays and metadata of the head's checkpoint, publication rolled forward."""
    if head.checkpoint is None:
        raise ConfigError(f"run {head.run!r} v{head.version} has no checkpoint")
    path = storage.publish(head.checkpoint)
    return checkpoint.load_file(path, head.checkpoint.sha256)


def _restore(
    head: LineageHead, config: ModelConfig, inputs: tuple[str, ...],
    state: dict[str, Any], meta: dict[str, Any],
) -> Any:  # fmt: skip
    model = make_model(config.kind, dict(config.params))
    params = model_params(model)
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
    try:
        model.set_state(state)
    except (KeyError, ValueError, TypeError) as exc:
        raise StorageError(
            f"lineage {head.run!r} v{head.version}: its checkpoint holds no {config.kind} "
            f"state ({exc}); restore the file, or reset the lineage (batchml lineage reset)"
        ) from None
    return model


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
    return checkpoint.dumps(state, meta), checkpoint.params_digest(state)
