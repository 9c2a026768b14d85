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

import itertools
import re
from collections.abc import Hashable
from typing import Any

import lightgbm as lgb
import numpy as np

from batchml.fraud.models.checkpoint import Layout
from batchml.fraud.models.model_base import AdditiveModel
from batchml.fraud.models.replay import ReplayBuffer

_TREE = re.compile(r"(?m)^Tree=\d+\n")
_REPARSE = 16  # trees grown before the whole text is parsed again into one booster
_END = "end of trees"


def _trees(text: str) -> list[str]:
    """The tree blocks of a LightGBM text model, without their ``Tree=<n>`` lines."""
    body = text[text.index("\nTree=") + 1 : text.index(_END)]
    return _TREE.split(body)[1:]


def _header(text: str) -> str:
    """A text model's header (feature names and ranges, objective) without ``tree_sizes``: the
    byte sizes of the trees, which only let LightGBM parse them in parallel; without them it
    reads them one after another."""
    header = text[: text.index("\nTree=") + 1]
    return "".join(
        line for line in header.splitlines(keepends=True) if not line.startswith("tree_sizes=")
    )


def _numbered(trees: list[str], first: int) -> str:
    return "".join(f"Tree={first + n}\n{tree}" for n, tree in enumerate(trees))


def append_trees(model: str, grown: str) -> str:
    """The text model with the trees of ``model`` followed by those of ``grown``.

    The header is ``model``'s, minus ``tree_sizes``. Trees are renumbered; the end
    (importances, parameters) is ``grown``'s, informative only. Equals, tree for tree, what
    ``init_model`` training makes.
    """
    if not model:
        return grown
    trees = _trees(model) + _trees(grown)
    return _header(model) + _numbered(trees, 0) + grown[grown.index(_END) :]


class _TextModel:
    """The booster's text kept as header, one block of trees per part, and end, so that a step
    renders only its own trees: ``text`` is :func:`append_trees`' text, byte for byte."""

    def __init__(self) -> None:
        self.text = ""
        self.header = b""
        self.parts: list[bytes] = []
        self.end = b""
        self.trees = 0

    @classmethod
    def parse(cls, text: str, bounds: np.ndarray) -> _TextModel:
        """Split a stored text model (its per-part tree counts in ``bounds``) once."""
        model = cls()
        if not text:
            return model
        trees = _trees(text)
        if len(trees) != int(bounds[-1]):
            raise ValueError(f"the booster has {len(trees)} trees, tree_bounds says {bounds[-1]}")
        model.text, model.header = text, _header(text).encode()
        model.parts = [
            _numbered(trees[a:b], int(a)).encode() for a, b in itertools.pairwise(bounds.tolist())
        ]
        model.end, model.trees = text[text.index(_END) :].encode(), len(trees)
        return model

    def appended(self, grown: str) -> _TextModel:
        """A new text model: this one's trees, then ``grown``'s (this one is unchanged)."""
        trees = _trees(grown)
        model = _TextModel()
        model.text, model.header = self.text or grown, self.header or _header(grown).encode()
        model.parts = [*self.parts, _numbered(trees, self.trees).encode()]
        model.end, model.trees = grown[grown.index(_END) :].encode(), self.trees + len(trees)
        if len(model.parts) > 1:  # one part alone is the grown model's own text, tree_sizes kept
            model.text = b"".join([model.header, *model.parts, model.end]).decode()
        return model

    def pieces(self) -> list[tuple[Hashable, int]]:
        """The text's bytes as checkpoint pieces: header, each part's trees, end."""
        if len(self.parts) < 2:
            return [("text", len(self.text.encode()))]
        parts = [(("part", k), len(part)) for k, part in enumerate(self.parts)]
        return [("header", len(self.header)), *parts, ("end", len(self.end))]


class LightGBMModel(AdditiveModel):
    """Boosted trees grown a few at a time on a replay of recent batches.

    Rows may hold NaN (LightGBM sends missing values down a learnt side of each split). Until
    the memory holds both classes no tree is grown, and the model predicts the weighted share
    of frauds in its memory (0 when it has seen legitimate rows only)."""

    kind = "lgbm"
    allow_nan = True

    def __init__(
        self,
        trees_per_batch: int = 2,
        learning_rate: float = 0.1,
        num_leaves: int = 15,
        min_sum_hessian_in_leaf: float = 1.0,
        lambda_l2: float = 10.0,
        window: int = 30,
        legit_keep: float = 0.1,
        fraud_weight: float = 1.0,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.trees_per_batch = trees_per_batch
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_sum_hessian_in_leaf = min_sum_hessian_in_leaf
        self.lambda_l2 = lambda_l2
        self.window = window
        self.legit_keep = legit_keep
        self.fraud_weight = fraud_weight
        self.seed = seed
        self.num_threads = num_threads

    def check_params(self) -> None:
        self._lgb_params()  # TypeError/ValueError if a value is not a number
        if int(self.trees_per_batch) < 1:
            raise ValueError(f"trees_per_batch must be at least 1, got {self.trees_per_batch}")
        self._new_replay()  # window and legit_keep ranges

    def _new_replay(self) -> ReplayBuffer:
        return ReplayBuffer(
            window=int(self.window),
            legit_keep=float(self.legit_keep),
            fraud_weight=float(self.fraud_weight),
            seed=int(self.seed),
        )

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_sum_hessian_in_leaf": float(self.min_sum_hessian_in_leaf),
            "lambda_l2": float(self.lambda_l2),
            "seed": int(self.seed),
            "num_threads": int(self.num_threads),
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def _start(self) -> None:
        self.replay_ = self._new_replay()
        self.trees_ = _TextModel()
        self.tree_bounds_ = np.zeros(1, dtype=np.int64)  # trees before part 0, 1, …, and after
        self._booster: lgb.Booster | None = None
        self._grown: list[lgb.Booster] = []  # the parts grown since _booster was parsed

    @property
    def model_text_(self) -> str:
        """The booster as LightGBM's text model ("" before the first tree)."""
        return self.trees_.text

    @property
    def _has_trees(self) -> bool:
        return bool(self.model_text_)

    def _learn(self, X: np.ndarray, y: np.ndarray) -> None:
        """Sample the batch into the replay memory, then grow ``trees_per_batch`` trees on it.

        While the memory holds a single class (no fraud seen yet) no tree is grown: a tree
        could not separate anything, and LightGBM's starting score would be infinite.
        """
        replay = self.replay_
        replay.add(X, y, self._raw_scores)
        if not replay.has_both_classes():
            return
        trees = self._has_trees
        data = lgb.Dataset(
            replay.X, label=replay.y, weight=replay.weights(), params={"verbosity": -1},
            init_score=replay.margin if trees else None,
        )  # fmt: skip
        grown = lgb.train(
            self._lgb_params(),
            data,
            num_boost_round=int(self.trees_per_batch),
            keep_training_booster=False,
        )
        fresh = np.asarray(grown.predict(replay.X, raw_score=True), dtype=np.float64)
        replay.margin = replay.margin + fresh if trees else fresh
        self.trees_ = self.trees_.appended(grown.model_to_string())
        self.tree_bounds_ = np.append(self.tree_bounds_, self.tree_bounds_[-1] + grown.num_trees())
        if not trees:  # the first part: its booster is the whole model
            self._booster, self._grown = grown, []
        else:
            self._grown = [*getattr(self, "_grown", []), grown]  # parsed from its text by train
        if sum(g.num_trees() for g in self._grown) >= _REPARSE:
            self._booster, self._grown = lgb.Booster(model_str=self.model_text_), []

    def _raw_scores(self, X: np.ndarray) -> np.ndarray:
        """The booster's raw score (log-odds) of each row; 0 before the first tree (the
        memory's margins start from the first trees' scores, not from this).

        The trees grown since the booster was last parsed from the whole text are added one
        tree at a time: LightGBM sums a row's trees one after another from 0, so adding each
        newer tree's output to the older trees' sum gives the very same floats as one booster
        of all the trees, without parsing the whole text at every step."""
        if not self._has_trees:
            return np.zeros(len(X))
        threads = int(self.num_threads)
        scores = np.asarray(self._base().predict(X, raw_score=True, num_threads=threads))
        for part in getattr(self, "_grown", []):
            for tree in range(part.num_trees()):
                scores = scores + part.predict(
                    X, start_iteration=tree, num_iteration=1, raw_score=True, num_threads=threads
                )
        return np.asarray(scores, dtype=np.float64)

    def _prior(self) -> float:
        """The weighted share of frauds in the memory (0.5 when it is empty)."""
        w = self.replay_.weights()
        total = float(w.sum())
        return float(w[self.replay_.y == 1].sum()) / total if total > 0 else 0.5

    def parts(self) -> int:
        """Batches that added trees: the booster's trees in per-batch groups."""
        return len(self.tree_bounds_) - 1

    def raw_part(self, X: np.ndarray, part: int) -> np.ndarray:
        first, stop = int(self.tree_bounds_[part]), int(self.tree_bounds_[part + 1])
        grown = getattr(self, "_grown", [])
        if grown and part >= self.parts() - len(grown):  # a part grown since the last parse:
            scores = grown[part - self.parts()].predict(  # its own trees, summed from 0 alike
                np.asarray(X, dtype=np.float64), raw_score=True, num_threads=int(self.num_threads)
            )
            return np.asarray(scores, dtype=np.float64)
        scores = self._base().predict(
            np.asarray(X, dtype=np.float64), start_iteration=first, num_iteration=stop - first,
            raw_score=True, num_threads=int(self.num_threads),
        )  # fmt: skip
        return np.asarray(scores, dtype=np.float64)

    def _base(self) -> lgb.Booster:
        """The booster parsed last: every tree but those of the parts in ``_grown``."""
        booster = getattr(self, "_booster", None)
        if booster is None:  # only a model restored without it: parse every tree
            booster = self._booster = lgb.Booster(model_str=self.model_text_)
            self._grown = []
        return booster

    def _predictor(self) -> lgb.Booster:
        """One booster of every tree (for this call only, if some were grown since the last
        parse: predicting leaves the model as it is)."""
        base = self._base()
        return lgb.Booster(model_str=self.model_text_) if getattr(self, "_grown", []) else base

    def _fraud(self, X: np.ndarray) -> np.ndarray:
        if not self._has_trees:
            return np.full(len(X), self._prior())
        scores = self._predictor().predict(X, num_threads=int(self.num_threads))
        return np.asarray(scores, dtype=np.float64)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        p = self._fraud(X)
        return np.column_stack([1.0 - p, p])

    def _log_odds(self, X: np.ndarray) -> np.ndarray:
        if self._has_trees:
            return self._raw_scores(X)
        with np.errstate(divide="ignore"):
            prior = self._prior()
            return np.full(len(X), np.log(prior) - np.log1p(-prior))

    def last_batch_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Labels, fraud probabilities and weights of the last batch's rows in the replay
        memory (every fraud, a ``legit_keep`` share of the rest, weighed ``1 / legit_keep``):
        the memory keeps their scores, so the batch's metrics need no scoring. None before
        the first tree (the model then scores its constant prior)."""
        if not self._has_trees:
            return None
        y, raw, weight = self.replay_.newest()
        return y, self.probability(raw), weight

    def state_layout(self) -> Layout:
        """How :meth:`get_state` splits into checkpoint pieces (:mod:`.checkpoint`)."""
        pieces = {"booster": self.trees_.pieces(), **self.replay_.pieces()}
        return Layout(pieces=pieces, stored=frozenset({"replay_margin"}))

    def _get_state(self) -> dict[str, np.ndarray]:
        booster = np.frombuffer(self.model_text_.encode(), dtype=np.uint8)
        return {"booster": booster, "tree_bounds": self.tree_bounds_, **self.replay_.get_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> int:
        self._start()
        text = np.asarray(state["booster"], dtype=np.uint8).tobytes().decode()
        self.tree_bounds_ = np.ascontiguousarray(state["tree_bounds"], dtype=np.int64)
        self.trees_ = _TextModel.parse(text, self.tree_bounds_)
        self.replay_.set_state(state)
        if self.model_text_:
            self._booster = lgb.Booster(model_str=self.model_text_)
        return int(self.replay_.X.shape[1])
