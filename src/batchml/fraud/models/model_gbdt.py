"""Gradient-boosted trees (LightGBM) that continue from the previous booster, batch after batch.

Each ``partial_fit`` adds ``trees_per_batch`` trees to the booster, fitted on a replay memory of
the last ``window`` batches (:mod:`batchml.fraud.models.replay`), starting from the current
booster's raw score of each row — what LightGBM's ``init_model`` does, except that the memory
keeps each row's score and adds the newest trees' part, instead of running every tree on every
row at each step. The new trees are then appended to the booster's text model. The learned state is
that text as bytes, the number of trees after each batch that grew some, and the replay arrays:
no pickle anywhere. The score is a sum of per-batch groups of trees (:class:`AdditiveModel`),
so a reader that scored the previous version adds only the newest trees' part.

Deterministic: ``deterministic=True``, a fixed ``seed``, a fixed ``num_threads`` and a fixed
column-wise histogram layout (LightGBM otherwise picks one by timing both). Everything a step
starts from is in the state (the text model, the rows and their scores), so continuing in
memory and continuing after a checkpoint round trip give bit-identical bytes.

Defaults chosen on the validation period by ``bench/model_selection.py`` (docs/fraud.md).
"""

from __future__ import annotations

import re
from typing import Any

import lightgbm as lgb
import numpy as np

from batchml.fraud.models.model_base import AdditiveModel
from batchml.fraud.models.replay import ReplayBuffer

_TREE = re.compile(r"(?m)^Tree=\d+\n")
_END = "end of trees"


def _trees(text: str) -> list[str]:
    """The tree blocks of a LightGBM text model, without their ``Tree=<n>`` lines."""
    body = text[text.index("\nTree=") + 1 : text.index(_END)]
    return _TREE.split(body)[1:]


def append_trees(model: str, grown: str) -> str:
    """The text model with the trees of ``model`` followed by those of ``grown``.

    The header (feature names and ranges, objective) is ``model``'s, minus ``tree_sizes``: the
    byte sizes of the trees, which only let LightGBM parse them in parallel; without them it
    reads them one after another. Trees are renumbered; the end (importances, parameters) is
    ``grown``'s, informative only. Equals, tree for tree, what ``init_model`` training makes.
    """
    if not model:
        return grown
    header = model[: model.index("\nTree=") + 1]
    header = "".join(
        line for line in header.splitlines(keepends=True) if not line.startswith("tree_sizes=")
    )
    trees = _trees(model) + _trees(grown)
    body = "".join(f"Tree={number}\n{tree}" for number, tree in enumerate(trees))
    return header + body + grown[grown.index(_END) :]


class LightGBMModel(AdditiveModel):
    """Boosted trees grown a few at a time on a replay of recent batches."""

    kind = "lgbm"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.replay_ = ReplayBuffer(
            window=int(p["window"]),
            legit_keep=float(p["legit_keep"]),
            fraud_weight=float(p["fraud_weight"]),
            seed=int(p["seed"]),
        )
        self.model_text_ = ""
        self.tree_bounds_ = np.zeros(1, dtype=np.int64)  # trees before part 0, 1, …, and after
        self._booster: lgb.Booster | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {
            "trees_per_batch": 2,
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_sum_hessian_in_leaf": 1.0,
            "lambda_l2": 10.0,
            "window": 30,
            "legit_keep": 0.1,
            "fraud_weight": 1.0,
            "seed": 0,
            "num_threads": 1,
        }

    def _lgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary",
            "learning_rate": float(p["learning_rate"]),
            "num_leaves": int(p["num_leaves"]),
            "min_sum_hessian_in_leaf": float(p["min_sum_hessian_in_leaf"]),
            "lambda_l2": float(p["lambda_l2"]),
            "seed": int(p["seed"]),
            "num_threads": int(p["num_threads"]),
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    @property
    def is_fitted(self) -> bool:
        return bool(self.model_text_)

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> LightGBMModel:
        """Sample the batch into the replay memory, then grow ``trees_per_batch`` trees on it.

        While the memory holds a single class (no fraud seen yet) no tree is grown: a tree
        could not separate anything, and LightGBM's starting score would be infinite.
        """
        replay = self.replay_
        replay.add(X, y, self._raw_scores)
        if not replay.has_both_classes():
            return self
        data = lgb.Dataset(
            replay.X, label=replay.y, weight=replay.weights(), params={"verbosity": -1},
            init_score=replay.margin if self.is_fitted else None,
        )  # fmt: skip
        grown = lgb.train(
            self._lgb_params(),
            data,
            num_boost_round=int(self.params["trees_per_batch"]),
            keep_training_booster=False,
        )
        fresh = np.asarray(grown.predict(replay.X, raw_score=True), dtype=np.float64)
        replay.margin = replay.margin + fresh if self.is_fitted else fresh
        self.model_text_ = append_trees(self.model_text_, grown.model_to_string())
        self._booster = None
        self.tree_bounds_ = np.append(self.tree_bounds_, self.tree_bounds_[-1] + grown.num_trees())
        return self

    def _raw_scores(self, X: np.ndarray) -> np.ndarray:
        """The booster's raw score (log-odds) of each row; 0 before the first tree."""
        if not self.is_fitted:
            return np.zeros(len(X))
        scores = self._predictor().predict(
            X, raw_score=True, num_threads=int(self.params["num_threads"])
        )
        return np.asarray(scores, dtype=np.float64)

    def parts(self) -> int:
        """Batches that added trees: the booster's trees in per-batch groups."""
        return len(self.tree_bounds_) - 1

    def raw_part(self, X: np.ndarray, part: int) -> np.ndarray:
        first, stop = int(self.tree_bounds_[part]), int(self.tree_bounds_[part + 1])
        scores = self._predictor().predict(
            np.asarray(X, dtype=np.float64), start_iteration=first, num_iteration=stop - first,
            raw_score=True, num_threads=int(self.params["num_threads"]),
        )  # fmt: skip
        return np.asarray(scores, dtype=np.float64)

    def _predictor(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.model_text_)
        return self._booster

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_fitted:
            return np.zeros(len(X))
        scores = self._predictor().predict(
            np.asarray(X, dtype=np.float64), num_threads=int(self.params["num_threads"])
        )
        return np.asarray(scores, dtype=np.float64)

    def get_state(self) -> dict[str, np.ndarray]:
        if not self.replay_.batches_seen:
            return {}
        booster = np.frombuffer(self.model_text_.encode(), dtype=np.uint8)
        return {"booster": booster, "tree_bounds": self.tree_bounds_, **self.replay_.get_state()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            return
        self.model_text_ = np.asarray(state["booster"], dtype=np.uint8).tobytes().decode()
        self.tree_bounds_ = np.ascontiguousarray(state["tree_bounds"], dtype=np.int64)
        self._booster = None
        self.replay_.set_state(state)
