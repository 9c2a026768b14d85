"""A replay memory of recent batches, so each warm-start step learns from more than one day.

One day of transactions holds only ~80 frauds: trees grown on one day alone follow that day's
noise, and a chain of them drifts (measured in ``bench/model_selection.py``). The buffer keeps
the rows of the last ``window`` batches (today's included) — every fraud, and each legitimate
row with probability ``legit_keep`` — and a step fits on all of them.

Class imbalance is handled here, deliberately: under-sampling legitimate rows makes the buffer
~10× smaller, and each kept legitimate row weighs ``1 / legit_keep`` in the loss, so the sum of
weights matches the full data and the scores stay calibrated probabilities (accuracy at 0.5
keeps its meaning). Frauds weigh ``fraud_weight``.

Each row also keeps its current raw score (``margin``): the model's log-odds for it, which a
boosted model continues from. The model adds its newest trees' part after each step, so the
whole buffer is never scored again by every tree (that re-scoring grew with the number of trees
and was most of a training step's time).

Deterministic: the rows kept from batch number ``n`` are drawn from
``numpy.random.default_rng([seed, n])``, so the same batches in the same order give the same
buffer, in memory or restored from a checkpoint. Rows are stored as float32 (half the
checkpoint size; the values a model trains on are the stored ones, whichever the path).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Scorer = Callable[[np.ndarray], FloatArray]


class ReplayBuffer:
    """The sampled rows of the last ``window`` batches, with their batch numbers."""

    def __init__(self, window: int, legit_keep: float, fraud_weight: float, seed: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 batch, got {window}")
        if not 0.0 < legit_keep <= 1.0:
            raise ValueError(f"legit_keep must be in (0, 1], got {legit_keep}")
        self.window = window
        self.legit_keep = legit_keep
        self.fraud_weight = fraud_weight
        self.seed = seed
        self.batches_seen = 0
        self.X = np.zeros((0, 0), dtype=np.float32)
        self.y = np.zeros(0, dtype=np.int8)
        self.batch = np.zeros(0, dtype=np.int64)
        self.margin = np.zeros(0, dtype=np.float64)

    @property
    def n_features(self) -> int | None:
        return int(self.X.shape[1]) if self.batches_seen else None

    def add(self, X: npt.ArrayLike, y: npt.ArrayLike, score: Scorer) -> None:
        """Sample one batch into the buffer and forget batches older than the window.

        ``score`` gives the model's current raw score of the kept rows (their ``margin``)."""
        rows = np.asarray(X, dtype=np.float32)
        labels = np.asarray(y).astype(np.int8)
        if rows.ndim != 2 or len(rows) != len(labels):
            raise ValueError(f"X must be 2-D with one row per label, got {rows.shape}")
        if self.n_features is not None and rows.shape[1] != self.n_features:
            raise ValueError(f"X has {rows.shape[1]} features; this model has {self.n_features}")
        rng = np.random.default_rng([self.seed, self.batches_seen])
        keep = (labels == 1) | (rng.random(len(labels)) < self.legit_keep)
        number = self.batches_seen
        self.batches_seen += 1
        recent = self.batch > number - self.window
        old_X = self.X[recent] if len(self.X) else np.zeros((0, rows.shape[1]), np.float32)
        self.X = np.concatenate([old_X, rows[keep]])
        self.y = np.concatenate([self.y[recent], labels[keep]])
        self.batch = np.concatenate([self.batch[recent], np.full(int(keep.sum()), number)])
        fresh = np.asarray(score(rows[keep]), dtype=np.float64)
        self.margin = np.concatenate([self.margin[recent], fresh])

    def weights(self) -> FloatArray:
        """Per-row loss weights: ``fraud_weight`` for frauds, ``1 / legit_keep`` otherwise."""
        return np.where(self.y == 1, self.fraud_weight, 1.0 / self.legit_keep)

    def has_both_classes(self) -> bool:
        return bool(len(self.y)) and 0 < int(self.y.sum()) < len(self.y)

    def newest(self) -> tuple[np.ndarray, np.ndarray, FloatArray]:
        """Labels, raw scores and inverse sampling probabilities (1 for a fraud,
        ``1 / legit_keep`` for a legitimate row) of the rows kept from the newest batch: a
        weighted sample of the whole batch."""
        rows = self.batch == self.batches_seen - 1
        y = self.y[rows]
        return y, self.margin[rows], np.where(y == 1, 1.0, 1.0 / self.legit_keep)

    def pieces(self) -> dict[str, list[tuple[Hashable, int]]]:
        """The rows, labels and batch numbers as checkpoint pieces, one per batch (rows of a
        batch never change, so a checkpoint deflates only the newest batch's); the scores
        change at every step and are one piece."""
        numbers, counts = np.unique(self.batch, return_counts=True)
        if len(self.batch) > 1 and np.any(np.diff(self.batch) < 0):  # not in batch order
            return {}
        width = self.X.shape[1] * self.X.itemsize if self.X.ndim == 2 else 0
        spans = list(zip(numbers.tolist(), counts.tolist(), strict=True))
        return {
            "replay_X": [(("batch", n), c * width) for n, c in spans],
            "replay_y": [(("batch", n), c * self.y.itemsize) for n, c in spans],
            "replay_batch": [(("batch", n), c * self.batch.itemsize) for n, c in spans],
        }

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "replay_X": self.X,
            "replay_y": self.y,
            "replay_batch": self.batch,
            "replay_margin": self.margin,
            "replay_batches_seen": np.asarray(self.batches_seen, dtype=np.int64),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.X = np.ascontiguousarray(state["replay_X"], dtype=np.float32)
        self.y = np.ascontiguousarray(state["replay_y"], dtype=np.int8)
        self.batch = np.ascontiguousarray(state["replay_batch"], dtype=np.int64)
        self.margin = np.ascontiguousarray(state["replay_margin"], dtype=np.float64)
        self.batches_seen = int(state["replay_batches_seen"])
