"""The interface every incremental fraud model implements: learn one batch at a time.

A model kind is a scikit-learn classifier (:class:`~sklearn.base.BaseEstimator` +
:class:`~sklearn.base.ClassifierMixin`) that follows its conventions:

* the constructor takes the parameters as keyword arguments and stores them unchanged, so
  ``get_params``, ``set_params`` and ``sklearn.base.clone`` work; values are checked when the
  model first learns (and by :func:`batchml.fraud.models.model.make_model`);
* learned state exists only after the first ``partial_fit``, in attributes ending in ``_``:
  ``classes_``, ``n_features_in_``, ``feature_names_in_`` (when given a DataFrame), and the
  kind's own;
* ``partial_fit(X, y, classes=None)`` needs ``classes`` on its first call (two labels: these
  are binary classifiers), checks the feature count (and names) on later calls, and returns
  ``self``; ``fit(X, y)`` forgets what was learnt and learns the one batch;
* ``predict_proba`` gives an ``(n, 2)`` array (columns in the order of ``classes_``),
  ``decision_function`` the log-odds of ``classes_[1]``, ``predict`` the labels; each raises
  :class:`sklearn.exceptions.NotFittedError` before the first batch.

Each kind adds ``get_state``/``set_state`` so a checkpoint is a set of numeric arrays, never a
pickle. Restoring a state and continuing gives bit-for-bit the model that continuing in memory
would have given. The state holds the kind's arrays and, only when they are not the defaults,
``classes`` (labels other than 0/1) and ``feature_names_in`` (trained on a DataFrame): a
lineage trains on arrays labelled 0/1, so its checkpoints hold neither.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

#: the labels of the fraud workload: 0 legitimate, 1 fraud
CLASSES = np.array([0, 1])
FRAUD = 1

_OPTIONAL_STATE = ("classes", "feature_names_in")


class IncrementalModel(ClassifierMixin, BaseEstimator, ABC):  # type: ignore[misc]
    """A binary classifier that learns one batch at a time."""

    kind: ClassVar[str]
    classes_: np.ndarray
    n_features_in_: int
    #: whether rows may hold NaN (missing values)
    allow_nan: ClassVar[bool] = False

    # -- what a kind implements -------------------------------------------------------------

    def check_params(self) -> None:
        """Raise ValueError if a parameter value is invalid (its type or range)."""

    @abstractmethod
    def _start(self) -> None:
        """Create the learned state of an untrained model (on the first batch)."""

    @abstractmethod
    def _learn(self, X: np.ndarray, y: np.ndarray) -> None:
        """Continue training on one batch of float64 rows and 0/1 labels."""

    @abstractmethod
    def _log_odds(self, X: np.ndarray) -> np.ndarray:
        """Raw score of ``classes_[1]`` for each float64 row."""

    @abstractmethod
    def _proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)`` probabilities of ``classes_[0]`` and ``classes_[1]``."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """The kind's learned arrays."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> int:
        """Restore the kind's arrays; returns the feature count they were trained on."""

    # -- the scikit-learn interface ---------------------------------------------------------

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = self.allow_nan
        return tags

    def _rows(self, X: Any, reset: bool, y: Any = None) -> Any:
        finite = "allow-nan" if self.allow_nan else True
        if y is None:
            return validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=finite)
        return validate_data(self, X, y, reset=reset, dtype=np.float64, ensure_all_finite=finite)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> IncrementalModel:
        """Continue training on one batch; ``classes`` (both labels) is needed the first time.

        Raises ValueError on a first call without two classes, on labels outside
        ``classes_``, and on a batch whose feature count (or names) differ from the first's."""
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError(
                    f"{type(self).__name__}: classes must be passed on the first call to "
                    "partial_fit (both labels, e.g. classes=[0, 1])"
                )
            labels = np.unique(np.asarray(classes))
            if len(labels) != 2:
                raise ValueError(
                    f"Only binary classification is supported: {type(self).__name__} needs "
                    f"classes with two labels, got {labels.tolist()}"
                )
            self.check_params()
        else:
            labels = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), labels):
                raise ValueError(
                    f"classes {np.unique(classes).tolist()} differ from those of the first "
                    f"call to partial_fit ({labels.tolist()})"
                )
        try:
            X, y = self._rows(X, reset=first, y=y)
            check_classification_targets(y)
            unknown = np.setdiff1d(np.unique(y), labels)
            if len(unknown):
                raise ValueError(
                    f"y holds label(s) {unknown.tolist()} not in classes {labels.tolist()}"
                )
        except (ValueError, TypeError):
            if first:  # an untrained model stays untrained
                for name in ("n_features_in_", "feature_names_in_"):
                    self.__dict__.pop(name, None)
            raise
        if first:
            self.classes_ = labels
            self._start()
        self._learn(X, (y == labels[1]).astype(np.int64))
        return self

    def fit(self, X: Any, y: Any) -> IncrementalModel:
        """Forget what was learnt, then learn the one batch ``(X, y)`` (two labels needed)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        check_classification_targets(y)  # a continuous y: "Unknown label type"
        labels = np.unique(np.asarray(y))
        if len(labels) != 2:
            raise ValueError(
                f"Only binary classification is supported: {type(self).__name__} needs y with "
                f"two classes, got {len(labels)} class{'es' * (len(labels) != 1)}"
            )
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("__")]:
            delattr(self, name)
        self.__dict__.pop("_booster", None)
        self.__dict__.pop("_grown", None)
        return self.partial_fit(X, y, classes=labels)

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds of ``classes_[1]``, one per row (> 0 where it is predicted)."""
        check_is_fitted(self)
        return np.asarray(self._log_odds(self._rows(X, reset=False)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of ``classes_[0]`` and ``classes_[1]``: shape ``(n, 2)``."""
        check_is_fitted(self)
        return self._proba(self._rows(X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        """The more probable label of each row."""
        positive = self.decision_function(X) > 0
        return np.asarray(self.classes_[positive.astype(np.int64)])

    # -- checkpoint state -------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """The learned state as named numeric arrays; NotFittedError before the first batch."""
        check_is_fitted(self)
        state = self._get_state()
        if not np.array_equal(self.classes_, CLASSES) or self.classes_.dtype.kind not in "iu":
            state["classes"] = np.asarray(self.classes_)
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in"] = np.asarray(self.feature_names_in_, dtype=str)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state produced by get_state (ValueError if it is incomplete)."""
        own = {k: v for k, v in state.items() if k not in _OPTIONAL_STATE}
        try:
            n_features = self._set_state(own)
        except KeyError as exc:
            raise ValueError(f"{self.kind} state has no array {exc}") from None
        self.classes_ = np.asarray(state["classes"]) if "classes" in state else CLASSES.copy()
        self.n_features_in_ = n_features
        self.__dict__.pop("feature_names_in_", None)
        if "feature_names_in" in state:
            self.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)


def fraud_scores(model: Any, X: Any) -> np.ndarray:
    """The probability of fraud (label 1) of each row, from any fitted classifier's
    ``predict_proba``; NotFittedError before it learnt anything."""
    proba = np.asarray(model.predict_proba(X))
    classes = list(np.asarray(getattr(model, "classes_", CLASSES)))
    if FRAUD not in classes:
        raise ValueError(f"the model's classes {classes} hold no fraud label {FRAUD}")
    return np.asarray(proba[:, classes.index(FRAUD)], dtype=np.float64)


class AdditiveModel(IncrementalModel):
    """A model whose raw score is a sum of per-batch parts (boosting adds trees per batch).

    A reader that kept the raw scores of version v-1 on some rows gets version v's by adding
    the parts of the batches since; summing the parts one batch after another from zero gives
    exactly the same floats, so scores computed either way are bit-identical. A trained model
    with no part yet (it has seen one class only) scores by ``predict_proba``.
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
