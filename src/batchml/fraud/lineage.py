"""The model lineage v0 → v1 → … → vn on storage: checkpoint names, saving and resuming.

The head itself (version, checkpoint, dataset) lives in the queue backend and moves by
compare-and-set with the item's completion (DESIGN.md, "Model lineage"). This module turns a
head into a model: it rolls the head's checkpoint publication forward if its writer died
between commit and rename, verifies the sha256, and restores the state arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchml.errors import ConfigError
from batchml.fraud import checkpoint
from batchml.fraud.model import IncrementalModel, make_model
from batchml.queue.base import LineageHead
from batchml.storage import Storage


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "sgd"
    params: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ModelConfig:
        if not data:
            return cls()
        return cls(
            kind=str(data.get("kind", "sgd")),
            params=tuple(sorted((data.get("params") or {}).items())),
        )


def checkpoint_path(storage: Storage, run: str, version: int, dataset: str) -> str:
    return storage.run_path(run, "checkpoints", f"v{version:04d}-{dataset}.npz")


def load_head(
    storage: Storage, head: LineageHead, config: ModelConfig, inputs: tuple[str, ...]
) -> tuple[IncrementalModel, dict[str, Any]]:
    """The model at ``head`` (a fresh one at version 0), checked against config and inputs."""
    model = make_model(config.kind, dict(config.params))
    if head.checkpoint is None:
        return model, {}
    path = storage.publish(head.checkpoint)
    state, meta = checkpoint.load_file(path, head.checkpoint.sha256)
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
    return model, meta


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
