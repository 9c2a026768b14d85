"""Model kinds: warm start, checkpoint round trips bit for bit, determinism, no pickles."""

from __future__ import annotations

import io
import zipfile

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from batchml.errors import ConfigError, StorageError
from batchml.fraud.evaluation import protocol, test_cache
from batchml.fraud.evaluation.metrics import roc_auc
from batchml.fraud.models import checkpoint
from batchml.fraud.models.model import DEFAULT_KIND, MODEL_KINDS, make_model
from batchml.fraud.models.model_base import CLASSES, IncrementalModel, fraud_scores
from batchml.fraud.models.model_gbdt import append_trees
from batchml.fraud.models.replay import ReplayBuffer

N_FEATURES = 5


def batches(n: int, rows: int = 600, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic days: ~3 % frauds, which sit at large values of features 0 and 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        X = rng.normal(size=(rows, N_FEATURES))
        y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=rows) > 2.4).astype(np.int64)
        out.append((X, y))
    return out


def zero_scores(X: np.ndarray) -> np.ndarray:
    return np.zeros(len(X))


def fit(model: IncrementalModel, data: list[tuple[np.ndarray, np.ndarray]]) -> IncrementalModel:
    for X, y in data:
        model.partial_fit(X, y, classes=CLASSES)
    return model


def round_trip(model: IncrementalModel) -> tuple[IncrementalModel, bytes]:
    data = checkpoint.dumps(model.get_state(), {"format": checkpoint.FORMAT, "kind": model.kind})
    state, meta = checkpoint.loads(data, "memory")
    restored = make_model(str(meta["kind"]), model.get_params())
    restored.set_state(state)
    return restored, data


def state_bytes(model: IncrementalModel) -> bytes:
    return checkpoint.dumps(model.get_state(), {"format": checkpoint.FORMAT})


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_continuing_after_a_checkpoint_round_trip_is_bit_identical(kind: str) -> None:
    """Given a model trained on 4 batches, when it is saved, loaded and trained on 3 more,
    then it equals the model that continued in memory, bit for bit."""
    data = batches(7)
    in_memory = fit(make_model(kind), data[:4])
    restored, _ = round_trip(in_memory)
    fit(in_memory, data[4:])
    fit(restored, data[4:])
    assert state_bytes(restored) == state_bytes(in_memory)
    X = data[0][0]
    assert np.array_equal(restored.predict_proba(X), in_memory.predict_proba(X))


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_the_same_batches_give_the_same_bytes(kind: str) -> None:
    data = batches(5)
    assert state_bytes(fit(make_model(kind), data)) == state_bytes(fit(make_model(kind), data))


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_every_kind_learns_the_signal(kind: str) -> None:
    model = fit(make_model(kind), batches(6))
    X, y = batches(1, rows=4000, seed=99)[0]
    auc = roc_auc(y, fraud_scores(model, X))
    assert auc is not None and auc > 0.9
    proba = model.predict_proba(X)
    assert proba.shape == (4000, 2) and np.all((proba >= 0) & (proba <= 1))
    assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_an_untrained_model_refuses_to_score_or_checkpoint(kind: str) -> None:
    """Given a model that has learnt nothing, scoring or saving it raises NotFittedError
    instead of giving zeros (which read as "no fraud anywhere")."""
    model = make_model(kind)
    rows = np.ones((3, N_FEATURES))
    for call in (model.predict_proba, model.predict, model.decision_function):
        with pytest.raises(NotFittedError):
            call(rows)
    with pytest.raises(NotFittedError):
        model.get_state()


def test_lgbm_grows_no_tree_before_the_first_fraud_then_learns() -> None:
    model = make_model("lgbm")
    X, y = batches(1)[0]
    model.partial_fit(X, np.zeros_like(y), classes=CLASSES)
    assert model.parts() == 0  # one class only: nothing to separate yet
    assert np.array_equal(fraud_scores(model, X), np.zeros(len(X)))  # all it saw: no fraud
    model.partial_fit(X, y)
    assert model.parts() == 1
    assert model.get_state()["replay_batches_seen"] == 2


def test_lgbm_refuses_a_batch_with_another_feature_count() -> None:
    model = fit(make_model("lgbm"), batches(1))
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(np.zeros((10, N_FEATURES + 1)), np.zeros(10, dtype=int))


def test_checkpoint_state_is_plain_arrays_and_the_booster_is_text() -> None:
    state = fit(make_model("lgbm"), batches(2)).get_state()
    assert all(not np.asarray(a).dtype.hasobject for a in state.values())
    assert state["booster"].tobytes().startswith(b"tree\n")


def test_checkpoint_refuses_to_unpickle_an_object_array() -> None:
    """Given a zip whose array holds pickled objects, loading it fails: nothing is unpickled."""
    payload = io.BytesIO()
    np.lib.format.write_array(payload, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("coef.npy", payload.getvalue())
        meta = np.frombuffer(b'{"format": "batchml-checkpoint/1"}', np.uint8)
        meta_bytes = io.BytesIO()
        np.lib.format.write_array(meta_bytes, meta)
        archive.writestr("__meta__.npy", meta_bytes.getvalue())
    with pytest.raises(StorageError, match="not a batchml checkpoint"):
        checkpoint.loads(buffer.getvalue(), "evil.npz")


def test_checkpoint_refuses_to_write_object_arrays() -> None:
    with pytest.raises(ValueError, match="Python objects"):
        checkpoint.dumps({"x": np.array([object()])}, {"format": checkpoint.FORMAT})


def test_unknown_kind_and_unknown_parameter_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model kind 'forest'"):
        make_model("forest")
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_model("lgbm", {"depth": 3})


def test_the_default_kind_is_registered() -> None:
    assert DEFAULT_KIND in MODEL_KINDS


def test_replay_keeps_every_fraud_samples_legit_rows_and_forgets_old_batches() -> None:
    buffer = ReplayBuffer(window=2, legit_keep=0.25, fraud_weight=2.0, seed=0)
    data = batches(3, rows=2000)
    for X, y in data:
        buffer.add(X, y, zero_scores)
    assert set(buffer.batch.tolist()) == {1, 2}  # batch 0 fell out of the window
    frauds = sum(int(y.sum()) for _, y in data[1:])
    assert int(buffer.y.sum()) == frauds
    legit = int((buffer.y == 0).sum())
    assert 0.2 * 2 * 2000 < legit < 0.3 * 2 * 2000
    assert set(np.unique(buffer.weights()).tolist()) == {2.0, 4.0}


def test_replay_sampling_depends_only_on_seed_and_batch_number() -> None:
    data = batches(2)
    a = ReplayBuffer(window=3, legit_keep=0.1, fraud_weight=1.0, seed=5)
    b = ReplayBuffer(window=3, legit_keep=0.1, fraud_weight=1.0, seed=5)
    for X, y in data:
        a.add(X, y, zero_scores)
    b.set_state({k: v.copy() for k, v in ReplayBuffer(3, 0.1, 1.0, 5).get_state().items()})
    for X, y in data:
        b.add(X, y, zero_scores)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.batch, b.batch)


def test_scores_kept_between_versions_equal_a_cold_start() -> None:
    """Given a worker that scored every version in turn (adding each batch's trees), and one
    that scores the last version cold, then both get the very same floats."""
    model = make_model("lgbm")
    X, y = batches(1, rows=500, seed=3)[0]
    day = np.full(len(y), np.datetime64("2018-01-01"))
    test = protocol.TestSet(
        X=X, y=y, day=day, card=np.arange(len(y)), days=("2018-01-01",), excluded=0
    )
    test_cache.clear()
    parent: str | None = None
    for Xb, yb in batches(6):
        model.partial_fit(Xb, yb, classes=CLASSES)
        digest = checkpoint.params_digest(model.get_state())
        warm = test_cache.scores(test, model, parent, digest)
        parent = digest
    test_cache.clear()
    cold = test_cache.scores(test, model, None, "cold")
    assert np.array_equal(warm, cold)
    assert np.allclose(cold, fraud_scores(model, X), rtol=0, atol=1e-12)


def test_appended_trees_equal_what_init_model_training_grows() -> None:
    """Growing trees from the kept raw scores and appending their text gives the booster that
    LightGBM's own continued training (``init_model``) gives, tree for tree."""
    X, y = batches(1, rows=3000)[0]
    params = {"objective": "binary", "num_leaves": 7, "deterministic": True, "num_threads": 1,
              "force_col_wise": True, "verbosity": -1}  # fmt: skip
    first = lgb.train(params, lgb.Dataset(X, y), num_boost_round=3)
    raw = first.predict(X, raw_score=True)
    grown = lgb.train(params, lgb.Dataset(X, y, init_score=raw), num_boost_round=2)
    appended = lgb.Booster(model_str=append_trees(first.model_to_string(), grown.model_to_string()))
    continued = lgb.train(params, lgb.Dataset(X, y), num_boost_round=2, init_model=first)
    assert appended.num_trees() == continued.num_trees() == 5
    assert np.array_equal(appended.predict(X, raw_score=True), continued.predict(X, raw_score=True))
    assert append_trees("", grown.model_to_string()) == grown.model_to_string()


def test_trees_added_one_at_a_time_score_as_one_booster_of_all_of_them() -> None:
    """Given a model that adds each step's trees to the booster it parsed a few steps before
    (parsing the whole text again every 16 trees), its raw scores and each part's scores are
    bit-identical to those of one booster parsed from the whole text, at every step."""
    model = make_model("lgbm", {"window": 4})
    probe = batches(1, rows=800, seed=21)[0][0]
    for X, y in batches(20, rows=400):
        model.partial_fit(X, y, classes=CLASSES)
        whole = lgb.Booster(model_str=model.model_text_)
        assert np.array_equal(model._raw_scores(probe), whole.predict(probe, raw_score=True))
        last = model.parts() - 1
        first, stop = model.tree_bounds_[last], model.tree_bounds_[last + 1]
        part = whole.predict(
            probe, start_iteration=first, num_iteration=stop - first, raw_score=True
        )
        assert np.array_equal(model.raw_part(probe, last), part)
    assert 0 < len(model._grown) < model.parts()  # some trees are added one at a time
