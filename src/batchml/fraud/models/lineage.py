"""The model lineage v0 → v1 → … → vn on storage: checkpoint names, saving and resuming.

The head itself (version, checkpoint, dataset) lives in the queue backend and moves by
compare-and-set with the item's completion (docs/design.md, "Model lineage"). This module turns a
head into a model: it rolls the head's checkpoint publication forward if its writer died
between commit and rename, verifies the sha256, and restores the state arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchml.errors import ConfigError
from batchml.fraud.models import checkpoint
from batchml.fraud.models.kinds import DEFAULT_KIND
from batchml.fraud.models.model import make_model
from batchml.fraud.models.model_base import IncrementalModel
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
        params = make_model(self.kind, dict(self.params)).params
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
) -> IncrementalModel:  # fmt: skip
    model = make_model(config.kind, dict(config.params))
    if meta.get("kind") != config.kind or meta.get("params") != model.params:
        raise ConfigError(
            f"lineage {head.run!r} v{head.version} was trained as {meta.get('kind')} "
            f"{meta.get('params')}, but this item asks for {config.kind} {model.params}; "
            "start a new run (--run NAME) to change the model"
        )
    if tuple(meta.get("inputs", ())) != inputs:
        raise ConfigError(
            f"lineage {head.run!r} v{head.version} was trained on other input features; "
            "start a new run (--run NAME) to change the features"
        )
    model.set_state(state)
    return model


def load_head(
    storage: Storage, head: LineageHead, config: ModelConfig, inputs: tuple[str, ...]
) -> tuple[IncrementalModel, dict[str, Any]]:
    """The model at ``head`` (a fresh one at version 0), checked against config and inputs."""
    if head.checkpoint is None:
        return make_model(config.kind, dict(config.params)), {}
    state, meta = _read(storage, head)
    return _restore(head, config, inputs, state, meta), meta


def load_version(
    storage: Storage, head: LineageHead, inputs: tuple[str, ...]
) -> tuple[IncrementalModel, dict[str, Any]]:
    """The model of a trained version, of the kind and parameters its checkpoint records.

    For readers (scoring, evaluation) that use a version as it is rather than continue it."""
    state, meta = _read(storage, head)
    config = ModelConfig(kind=str(meta["kind"]), params=tuple(sorted(meta["params"].items())))
    return _restore(head, config, inputs, state, meta), meta


def save_bytes(
    model: IncrementalModel, inputs: tuple[str, ...], lineage: dict[str, Any]
) -> tuple[bytes, str]:
    """Checkpoint bytes and the params digest of a model."""
    state = model.get_state()
    meta = {
        "format": checkpoint.FORMAT,
        "kind": model.kind,
        "params": model.params,
        "inputs": list(inputs),
        "versions": checkpoint.library_versions(),
        "lineage": lineage,
    }
    return checkpoint.dumps(state, meta), checkpoint.params_digest(state)
