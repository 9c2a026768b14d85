"""Incremental fraud models: the registry of model kinds, and the SGD logistic floor.

Every built-in kind implements :class:`~batchml.fraud.models.model_base.IncrementalModel` (a
scikit-learn classifier): warm-started one dataset after another, state as plain arrays.
``sgd`` (below) is the linear floor; ``lgbm`` (:mod:`batchml.fraud.models.model_gbdt`) is the
default, chosen by ``bench/model_selection.py``. :func:`make_model` also builds the user kinds
registered with :func:`batchml.fraud.models.kinds.model_kind`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from batchml.errors import ConfigError
from batchml.fraud.models.kinds import DEFAULT_KIND, KIND_NAMES, known_kinds, user_kinds
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

    def __init__(
        self, alpha: float = 1e-4, fraud_weight: float = 1.0, seed: int = 0, epochs: int = 3
    ) -> None:
        self.alpha = alpha
        self.fraud_weight = fraud_weight
        self.seed = seed
        self.epochs = epochs

    def check_params(self) -> None:
        float(self.fraud_weight), int(self.seed)  # TypeError/ValueError if not numbers
        if not float(self.alpha) >= 0.0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")

    def _start(self) -> None:
        self.scaler_ = StandardScaler()
        self.clf_ = SGDClassifier(
            loss="log_loss",
            alpha=float(self.alpha),
            class_weight={0: 1.0, 1: float(self.fraud_weight)},
            learning_rate="optimal",
            random_state=int(self.seed),
        )

    def _learn(self, X: np.ndarray, y: np.ndarray) -> None:
        self.scaler_.partial_fit(X)
        scaled = self.scaler_.transform(X)
        for _ in range(int(self.epochs)):
            self.clf_.partial_fit(scaled, y, classes=CLASSES)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.clf_.predict_proba(self.scaler_.transform(X)))

    def _log_odds(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.clf_.decision_function(self.scaler_.transform(X)))

    def _get_state(self) -> dict[str, np.ndarray]:
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

    def _set_state(self, state: dict[str, np.ndarray]) -> int:
        self._start()
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
        return int(state["coef"].shape[1])


MODEL_KINDS: dict[str, type[IncrementalModel]] = {
    SGDLogistic.kind: SGDLogistic,
    LightGBMModel.kind: LightGBMModel,
}
assert DEFAULT_KIND in MODEL_KINDS and set(MODEL_KINDS) == set(KIND_NAMES)


def model_class(kind: str) -> type[Any]:
    """The estimator class of a built-in or registered
    (:func:`~batchml.fraud.models.kinds.model_kind`) kind; ConfigError if there is none."""
    cls = MODEL_KINDS.get(kind) or user_kinds().get(kind)
    if cls is None:
        raise ConfigError(
            f"unknown model kind {kind!r}; choose one of {', '.join(known_kinds())}"
        ) from None
    return cls


def make_model(kind: str, params: dict[str, Any] | None = None) -> Any:
    """A fresh, unfitted model of ``kind`` with ``params`` over its defaults.

    ConfigError for an unknown kind or parameter name, or parameters that are not JSON (a
    checkpoint records them); ValueError or TypeError for a value the kind refuses."""
    cls = model_class(kind)
    params = dict(params or {})
    known = set(cls._get_param_names())
    unknown = set(params) - known
    if unknown:
        raise ConfigError(f"model {kind!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    model = cls(**params)
    check = getattr(model, "check_params", None)
    if callable(check):
        check()
    try:
        json.dumps(model.get_params(deep=False), allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(
            f"model {kind!r}: parameters {model.get_params(deep=False)!r} are not plain JSON "
            "values; a checkpoint records them"
        ) from None
    return model


def model_params(model: Any) -> dict[str, Any]:
    """A model's parameters as its checkpoint records them."""
    return dict(model.get_params(deep=False))


def model_kind_of(model: Any) -> str:
    """The registered kind name of a model."""
    kind = getattr(type(model), "kind", None)
    if isinstance(kind, str) and MODEL_KINDS.get(kind) is type(model):
        return kind
    for name, cls in user_kinds().items():
        if cls is type(model):
            return name
    raise ConfigError(f"{type(model).__name__} is no registered model kind")
