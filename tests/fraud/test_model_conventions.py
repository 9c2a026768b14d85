"""The model kinds follow scikit-learn's conventions, old checkpoints stay readable, and a
user's own estimator can train a lineage when it checkpoints as arrays."""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from batchml import exitcodes
from batchml.errors import ConfigError, PayloadError
from batchml.fraud.evaluation import protocol
from batchml.fraud.evaluation import test_cache as test_sets
from batchml.fraud.features.pipeline import FeatureSpec
from batchml.fraud.models import checkpoint, kinds, lineage
from batchml.fraud.models.model import LightGBMModel, SGDLogistic, make_model
from batchml.fraud.models.model_base import CLASSES, fraud_scores
from batchml.fraud.tasks import check_train
from batchml.queue import open_queue
from batchml.queue.base import LineageHead
from batchml.settings import Settings
from batchml.storage import Storage
from tests.fraud.test_model import N_FEATURES, batches
from tests.support.cli import run_batchml
from tests.support.fraud_data import SMALL, small_root
from tests.support.fraud_env import make_env, train

FIXTURES = Path(__file__).parents[1] / "data" / "checkpoints"
SMALL_LGBM = {"trees_per_batch": 2, "num_leaves": 4, "window": 3, "legit_keep": 1.0}


@parametrize_with_checks([SGDLogistic(), LightGBMModel(**SMALL_LGBM)])
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    """scikit-learn's own checks (check_estimator), every one of them: none is expected to
    fail (``fit`` is a fresh model's one ``partial_fit``)."""
    check(estimator)


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_parameters_are_constructor_arguments_and_clone_keeps_them(kind: str) -> None:
    model = make_model(kind, {"seed": 3})
    params = model.get_params()
    assert params["seed"] == 3 and not any(k.endswith("_") for k in vars(model))
    model.set_params(seed=5)
    assert model.seed == 5 and clone(model).get_params() == {**params, "seed": 5}
    fitted = model.partial_fit(*batches(1)[0], classes=CLASSES)
    assert fitted is model and clone(model).get_params() == model.get_params()
    assert not hasattr(clone(model), "classes_")


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_partial_fit_needs_the_classes_first_then_checks_the_features(kind: str) -> None:
    model = make_model(kind)
    X, y = batches(1)[0]
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    assert not hasattr(model, "n_features_in_")  # a refused first batch leaves it untrained
    model.partial_fit(X, y, classes=[0, 1])
    assert model.n_features_in_ == N_FEATURES and list(model.classes_) == [0, 1]
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :-1], y)
    with pytest.raises(ValueError, match="differ from those of the first call"):
        model.partial_fit(X, y, classes=[0, 2])
    with pytest.raises(ValueError, match="not in classes"):
        model.partial_fit(X, np.full(len(y), 7))


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_predict_proba_is_n_by_2_and_agrees_with_predict_and_decision(kind: str) -> None:
    model = make_model(kind)
    for X, y in batches(3):
        model.partial_fit(X, y, classes=CLASSES)
    X = batches(1, seed=5)[0][0]
    proba, decision = model.predict_proba(X), model.decision_function(X)
    assert proba.shape == (len(X), 2) and decision.shape == (len(X),)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(X), model.classes_[(proba[:, 1] > 0.5).astype(int)])
    assert np.array_equal(
        np.argsort(decision, kind="stable"), np.argsort(proba[:, 1], kind="stable")
    )


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_a_dataframe_records_feature_names_and_its_checkpoint_keeps_them(kind: str) -> None:
    X, y = batches(1)[0]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    model = make_model(kind).partial_fit(frame, y, classes=CLASSES)
    assert list(model.feature_names_in_) == list(frame.columns)
    state, _ = checkpoint.loads(
        checkpoint.dumps(model.get_state(), {"format": checkpoint.FORMAT}), "m"
    )
    restored = make_model(kind)
    restored.set_state(state)
    assert list(restored.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="feature names"):
        restored.predict_proba(frame.rename(columns={"f0": "other"}))


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_string_labels_survive_a_checkpoint(kind: str) -> None:
    X, y = batches(1)[0]
    labels = np.where(y == 1, "fraud", "legit")
    model = make_model(kind).partial_fit(X, labels, classes=["legit", "fraud"])
    state, _ = checkpoint.loads(
        checkpoint.dumps(model.get_state(), {"format": checkpoint.FORMAT}), "m"
    )
    restored = make_model(kind)
    restored.set_state(state)
    assert list(restored.classes_) == ["fraud", "legit"]
    assert np.array_equal(restored.predict(X), model.predict(X))


def test_lineage_checkpoints_keep_their_format() -> None:
    """A model trained on arrays labelled 0/1 (what a lineage trains on) has exactly the state
    arrays it always had: no classes, no feature names (the bytes stay the same)."""
    model = make_model("sgd").partial_fit(*batches(1)[0], classes=CLASSES)
    assert sorted(model.get_state()) == [
        "coef", "intercept", "scaler_mean", "scaler_n", "scaler_scale", "scaler_var", "t",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["sgd", "lgbm"])
def test_checkpoints_written_before_the_conventions_still_load_and_score_alike(kind: str) -> None:
    """tests/data/checkpoints holds checkpoints the previous code wrote (its save path): they
    load, their params digest is unchanged, and they give the very same scores."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    state, meta = checkpoint.load_file(FIXTURES / f"v0003-{kind}.npz")
    assert meta["kind"] == kind and meta["params"] == expected[kind]["params"]
    model = make_model(kind, meta["params"])
    model.set_state(state)
    assert model.get_params() == meta["params"]
    assert checkpoint.params_digest(model.get_state()) == expected[kind]["params_digest"]
    probe = np.asarray(expected["probe"])
    assert fraud_scores(model, probe).tolist() == expected[kind]["scores"]
    model.partial_fit(probe, np.array([0, 1, 0, 0, 1]))  # and it continues, classes known


class NoState(ClassifierMixin, BaseEstimator):
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NoState:
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.zeros((len(X), 2))


@pytest.fixture
def user_kind() -> Any:
    """The kind tests.sample_models registers, for this test only (other tests never see it)."""
    module = importlib.import_module("tests.sample_models")
    kinds.model_kind("array-nb")(module.ArrayNB)  # again, if an earlier test unregistered it
    yield module
    kinds.unregister("array-nb")


def test_a_user_estimator_trains_a_lineage_checkpointed_as_arrays(
    user_kind: Any, tmp_path: Path
) -> None:
    """Given a registered user estimator with get_state/set_state, when workers train a
    lineage with it, then every version is a checkpoint of arrays, restored for the next."""
    env = make_env(tmp_path / "user")
    days = env.train_days[:4]
    config = lineage.ModelConfig(kind="array-nb", params=(("var_smoothing", 1e-6),))
    assert train(env, model=config, days=days) == [exitcodes.OK]
    chain = env.queue.lineage("default")
    assert [h.version for h in chain] == [1, 2, 3, 4]
    model, meta = lineage.load_version(env.storage, chain[-1], FeatureSpec().inputs)
    assert isinstance(model, user_kind.ArrayNB) and meta["kind"] == "array-nb"
    assert model.var_smoothing == 1e-6 and model.n_.sum() > 0  # the four days' rows


def test_an_estimator_that_cannot_checkpoint_cannot_be_registered() -> None:
    with pytest.raises(TypeError, match="get_state, set_state"):
        kinds.model_kind("no-state")(NoState)
    with pytest.raises(ValueError, match="already registered"):
        kinds.model_kind("sgd")(SGDLogistic)
    with pytest.raises(ConfigError, match="unknown model kind 'no-state'"):
        make_model("no-state")


def test_a_train_item_naming_an_unregistered_kind_is_refused(tmp_path: Path) -> None:
    storage = Settings(root=tmp_path).storage()
    payload = {"run": "r", "dataset": "2018-04-01", "path": "datasets/training/x.parquet",
               "model": {"kind": "never-registered"}}  # fmt: skip
    with pytest.raises(PayloadError, match="must name a kind of lgbm, sgd"):
        check_train(payload, storage)


def test_an_unfitted_model_never_scores_zeros_silently(tmp_path: Path) -> None:
    """Version 0 of a lineage is an unfitted model: it refuses to score."""
    storage = Settings(root=tmp_path).storage()
    model, meta = lineage.load_head(storage, LineageHead("r"), lineage.ModelConfig(), ())
    assert meta == {}
    with pytest.raises(NotFittedError):
        fraud_scores(model, np.zeros((2, N_FEATURES)))


@pytest.mark.timeout(240)
def test_a_user_kind_trains_through_worker_processes_named_by_tasks(tmp_path: Path) -> None:
    """Given days on a root, `queue push --model array-nb` is refused unless the module that
    registers the kind is named (--tasks); with it, a worker process trains the lineage."""
    root = tmp_path / "root"
    days = small_root(tmp_path / "cache", root, replace(SMALL, n_days=3))
    cli = ("--root", str(root))
    refused = run_batchml(*cli, "queue", "push", "--model", "array-nb")
    # a usage error (exit 2), as for any value of --model that is not a kind (issue 14)
    assert refused.code == exitcodes.USAGE and "'array-nb' is not a model kind" in refused.err
    named = (*cli, "--tasks", "tests.sample_models")
    pushed = run_batchml(*named, "queue", "push", "--model", "array-nb")
    assert pushed.code == exitcodes.OK, pushed.err
    worked = run_batchml(*named, "worker", "--poll", "0.05", timeout=180)
    assert worked.code == exitcodes.OK, worked.err
    queue = open_queue(f"sqlite:///{root}/queue.db")
    heads = queue.lineage("default")
    queue.close()
    assert [h.dataset for h in heads] == days
    ckpt = heads[-1].checkpoint
    assert ckpt is not None
    state, meta = checkpoint.load_file(Storage(root).resolve(ckpt.final), ckpt.sha256)
    assert meta["kind"] == "array-nb" and sorted(state) == ["classes", "n", "sq", "sum"]


def test_a_boosted_model_without_trees_scores_the_same_through_the_test_set_memo() -> None:
    """Given an lgbm model that has seen legitimate rows only (no tree yet), the train task's
    test scores (test_sets.scores) are its predict_proba's: 0, not the 0.5 of a zero sum."""
    model = make_model("lgbm")
    X, y = batches(1)[0]
    model.partial_fit(X, np.zeros_like(y), classes=CLASSES)
    day = np.full(len(y), np.datetime64("2018-01-01"))
    card = np.arange(len(y))
    test = protocol.TestSet(X=X, y=y, day=day, card=card, days=("2018-01-01",), excluded=0)
    test_sets.clear()
    scores = test_sets.scores(test, model, None, "v1")
    assert np.array_equal(scores, fraud_scores(model, X)) and not scores.any()
    model.partial_fit(*batches(1, seed=4)[0])  # trees now: the memo continues from the sum
    continued = test_sets.scores(test, model, "v1", "v2")
    assert np.allclose(continued, fraud_scores(model, X), rtol=0, atol=1e-12)
