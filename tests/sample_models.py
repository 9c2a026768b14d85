"""A user's own model kind, as a ``--tasks`` module registers it (tests name this module).

``ArrayNB`` is Gaussian naive Bayes kept as running sums: a scikit-learn classifier with
``partial_fit`` and ``predict_proba`` that also exposes its state as numeric arrays
(``get_state``/``set_state``), so its checkpoints are arrays, never pickles. A ``--tasks``
module must define a task, so this one defines ``ping``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from batchml.fraud.models.kinds import model_kind
from batchml.tasks import TaskContext, task


@model_kind("array-nb")
class ArrayNB(ClassifierMixin, BaseEstimator):
    """A user's estimator: Gaussian naive Bayes by running sums, state as arrays."""

    def __init__(self, var_smoothing: float = 1e-9) -> None:
        self.var_smoothing = var_smoothing

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> ArrayNB:
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        if not hasattr(self, "classes_"):
            self.classes_ = np.unique(classes)
            self.n_ = np.zeros(2)
            self.sum_ = np.zeros((2, X.shape[1]))
            self.sq_ = np.zeros((2, X.shape[1]))
        for k, label in enumerate(self.classes_):
            rows = X[y == label]
            self.n_[k] += len(rows)
            self.sum_[k] += rows.sum(axis=0)
            self.sq_[k] += (rows**2).sum(axis=0)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        if not hasattr(self, "classes_"):
            raise NotFittedError("ArrayNB is not fitted")
        n = np.maximum(self.n_, 1.0)[:, None]
        mean, var = self.sum_ / n, self.sq_ / n - (self.sum_ / n) ** 2 + self.var_smoothing + 1e-3
        X = np.asarray(X, dtype=np.float64)
        log = -0.5 * (((X[:, None, :] - mean) ** 2) / var + np.log(var)).sum(axis=2)
        log += np.log(np.maximum(self.n_, 1.0) / self.n_.sum())
        log -= log.max(axis=1, keepdims=True)
        p = np.exp(log)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def get_state(self) -> dict[str, np.ndarray]:
        return {"classes": self.classes_, "n": self.n_, "sum": self.sum_, "sq": self.sq_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.classes_, self.n_, self.sum_, self.sq_ = (
            state["classes"], state["n"], state["sum"], state["sq"],
        )  # fmt: skip


@task
def ping(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A task, so that ``--tasks tests.sample_models`` is a valid module to name."""
    return {"pong": True}
