"""The interface every incremental fraud model implements: learn one batch at a time.

A model kind follows scikit-learn's conventions (the constructor stores parameters; learned
state ends in ``_``; ``partial_fit`` returns ``self``) and adds ``get_state``/``set_state`` so a
checkpoint is a set of numeric arrays, never a pickle. Restoring a state and continuing must
give bit-for-bit the model that continuing in memory would have given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from batchml.errors import ConfigError

CLASSES = np.array([0, 1])


class IncrementalModel(ABC):
    """A binary classifier that learns one batch at a time."""

    kind: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = {**self.default_params(), **params}
        unknown = set(params) - set(self.default_params())
        if unknown:
            raise ConfigError(
                f"model {self.kind!r}: unknown parameter(s) {', '.join(sorted(unknown))}"
            )

    @classmethod
    @abstractmethod
    def default_params(cls) -> dict[str, Any]:
        """Parameters and their defaults (JSON values)."""

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """True once partial_fit has seen a batch."""

    @abstractmethod
    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> IncrementalModel:
        """Continue training on one batch; returns self."""

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Fraud scores in [0, 1], one per row."""

    @abstractmethod
    def get_state(self) -> dict[str, np.ndarray]:
        """The learned state as named numeric arrays."""

    @abstractmethod
    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state produced by get_state."""


class AdditiveModel(IncrementalModel):
    """A model whose raw score is a sum of per-batch parts (boosting adds trees per batch).

    A reader that kept the raw scores of version v-1 on some rows gets version v's by adding
    the parts of the batches since; summing the parts one batch after another from zero gives
    exactly the same floats, so scores computed either way are bit-identical.
    """

    @abstractmethod
    def parts(self) -> int:
        """How many per-batch parts the score is made of so far."""

    @abstractmethod
    def raw_part(self, X: np.ndarray, part: int) -> np.ndarray:
        """Raw score (log-odds) contribution of one part, for each row of ``X``."""

    @staticmethod
    def probability(raw: np.ndarray) -> np.ndarray:
        """Fraud probability from a summed raw score."""
        return np.asarray(1.0 / (1.0 + np.exp(-raw)))
