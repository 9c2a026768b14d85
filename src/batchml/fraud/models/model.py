"""Incremental fraud models: the registry of model kinds, and the SGD logistic floor.

Every kind implements :class:`~batchml.fraud.models.model_base.IncrementalModel`: warm-started one
dataset after another, state as plain arrays. ``sgd`` (below) is the linear floor; ``lgbm``
(:mod:`batchml.fraud.models.model_gbdt`) is the default, chosen by ``bench/model_selection.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from batchml.errors import ConfigError
from batchml.fraud.models.kinds import DEFAULT_KIND, KIND_NAMES
from batchml.fraud.models.model_base import CLASSES, IncrementalModel
from batchml.fraud.models.model_gbdt import LightGBMModel


class SGDLogistic(IncrementalModel):
    """Standardisation + logistic regression by SGD, both updated with ``partial_fit``.

    Class imbalance: frauds are ~1 % of transactions; each fraud row can weigh
    ``fraud_weight`` times a legitimate one in the loss. Measured on the validation weeks
    (``bench/model_selection.py``), up-weighting frauds lowers average precision here, so the
    default is 1 with three passes (``epochs``) over each batch.
    """

    kind = "sgd"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.scaler_ = StandardScaler()
        self.clf_ = SGDClassifier(
            loss="log_loss",
            alpha=float(self.params["alpha"]),
            class_weight={0: 1.0, 1: float(self.params["fraud_weight"])},
            learning_rate="optimal",
            random_state=int(self.params["seed"]),
        )
        self.epochs = int(self.params["epochs"])

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"alpha": 1e-4, "fraud_weight": 1.0, "seed": 0, "epochs": 3}

    @property
    def is_fitted(self) -> bool:
        return hasattr(self.clf_, "coef_")

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> SGDLogistic:
        X = np.asarray(X, dtype=np.float64)
        self.scaler_.partial_fit(X)
        scaled = self.scaler_.transform(X)
        for _ in range(self.epochs):
            self.clf_.partial_fit(scaled, np.asarray(y), classes=CLASSES)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_fitted:
            return np.zeros(len(X))
        scaled = self.scaler_.transform(np.asarray(X, dtype=np.float64))
        return np.asarray(self.clf_.predict_proba(scaled)[:, 1])

    def get_state(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            return {}
        s, c = self.scaler_, self.clf_
        return {
            "scaler_mean": s.mean_,
            "scaler_var": s.var_,
            "scaler_scale": s.scale_,
            "scaler_n": np.asarray(s.n_samples_seen_),
            "coef": c.coef_,
            "intercept": c.intercept_,
            "t": np.asarray([c.t_], dtype=np.float64),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            return
        s, c = self.scaler_, self.clf_
        s.mean_, s.var_, s.scale_ = state["scaler_mean"], state["scaler_var"], state["scaler_scale"]
        n = state["scaler_n"]
        s.n_samples_seen_ = n[()] if n.ndim == 0 else n  # a NumPy scalar, as sklearn keeps it
        s.n_features_in_ = int(state["coef"].shape[1])
        c.coef_ = np.ascontiguousarray(state["coef"])
        c.intercept_ = np.ascontiguousarray(state["intercept"])
        c.t_ = float(state["t"][0])
        c.classes_ = CLASSES
        c.n_features_in_ = int(state["coef"].shape[1])


MODEL_KINDS: dict[str, type[IncrementalModel]] = {
    SGDLogistic.kind: SGDLogistic,
    LightGBMModel.kind: LightGBMModel,
}
assert DEFAULT_KIND in MODEL_KINDS and set(MODEL_KINDS) == set(KIND_NAMES)


def make_model(kind: str, params: dict[str, Any] | None = None) -> IncrementalModel:
    """A fresh model of ``kind`` with ``params`` over its defaults; ConfigError if unknown."""
    try:
        cls = MODEL_KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown model kind {kind!r}; choose one of {', '.join(sorted(MODEL_KINDS))}"
        ) from None
    return cls(**(params or {}))
