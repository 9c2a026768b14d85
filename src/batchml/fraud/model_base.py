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
