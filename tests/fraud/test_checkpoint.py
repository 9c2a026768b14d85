"""Checkpoints written piece by piece: the same bytes as a cold writer, readable by numpy and by
the previous reader, and old files still load and continue to the same model."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from batchml.errors import StorageError
from batchml.fraud.models import checkpoint, lineage
from batchml.fraud.models.model import make_model
from batchml.fraud.models.model_base import CLASSES
from batchml.queue.base import LineageHead
from batchml.storage import Publication, Storage
from tests.fraud.test_model import batches

FIXTURES = Path(__file__).parents[1] / "data" / "checkpoints"
META = {"format": checkpoint.FORMAT, "kind": "lgbm"}


def write(model: object) -> bytes:
    return lineage.save_bytes(model, ("a", "b", "c", "d", "e"), {"version": 1})[0]


def test_a_warm_writer_gives_the_bytes_of_a_cold_one_at_every_step() -> None:
    """Given a model checkpointed after each batch by one process (which re-uses the pieces it
    deflated before), each checkpoint has the bytes a process that never wrote one gives."""
    model = make_model("lgbm", {"window": 3})
    checkpoint.forget_pieces()
    for X, y in batches(6):
        model.partial_fit(X, y, classes=CLASSES)
        warm = write(model)
        checkpoint.forget_pieces()
        assert write(model) == warm


def test_kept_pieces_never_stand_in_for_other_bytes() -> None:
    """Two models with the same piece keys but other values, written in turn, each get the
    bytes of a cold writer: a piece is re-used only when its bytes are equal."""
    one = make_model("lgbm", {"window": 3})
    two = make_model("lgbm", {"window": 3, "learning_rate": 0.2})
    for X, y in batches(3):
        one.partial_fit(X, y, classes=CLASSES)
        two.partial_fit(X, y, classes=CLASSES)
    warm = [write(one), write(two), write(one)]
    cold = []
    for model in (one, two, one):
        checkpoint.forget_pieces()
        cold.append(write(model))
    assert warm == cold and warm[0] != warm[1]


def test_a_piecewise_file_is_a_valid_zip_that_numpy_and_the_old_writer_agree_on() -> None:
    """Given the pieces layout of a trained model, the file passes zip's CRC checks, deflates
    piece by piece (some entries stored), and holds the very arrays of the previous writer."""
    model = make_model("lgbm", {"window": 3})
    for X, y in batches(5):
        model.partial_fit(X, y, classes=CLASSES)
    state, layout = model.get_state(), model.state_layout()
    assert len(layout.pieces["replay_X"]) == 3 and len(layout.pieces["booster"]) == 5 + 2
    data = checkpoint.dumps(state, META, layout)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        methods = {i.filename: i.compress_type for i in archive.infolist()}
    assert methods["replay_margin.npy"] == zipfile.ZIP_STORED
    assert methods["replay_X.npy"] == methods["booster.npy"] == zipfile.ZIP_DEFLATED
    new, _ = checkpoint.loads(data, "new")
    old, _ = checkpoint.loads(checkpoint.dumps_zipfile(state, META), "old")
    assert sorted(new) == sorted(old) == sorted(state)
    for name in state:
        assert new[name].dtype == old[name].dtype and np.array_equal(new[name], old[name])
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        assert np.array_equal(archive["replay_X"], state["replay_X"])


def test_a_state_past_the_zip_limits_is_written_by_the_zip64_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = make_model("lgbm", {"window": 3})
    for X, y in batches(2):
        model.partial_fit(X, y, classes=CLASSES)
    state = model.get_state()
    monkeypatch.setattr(checkpoint, "_LIMIT", 1000)
    assert checkpoint.dumps(state, META, model.state_layout()) == checkpoint.dumps_zipfile(
        state, META
    )


def test_a_layout_that_does_not_cover_its_array_is_refused() -> None:
    state = {"x": np.arange(10, dtype=np.int64)}
    with pytest.raises(ValueError, match="covers 16 bytes of 80"):
        checkpoint.dumps(state, META, checkpoint.Layout(pieces={"x": [("a", 8), ("b", 8)]}))


def test_a_checkpoint_of_the_previous_writer_continues_to_the_model_it_would_have_given() -> None:
    """tests/data/checkpoints/v0003-lgbm.npz was written by the previous code (one deflate
    stream per entry, the whole booster text re-split at each step). Loaded and trained on three
    more batches by this code, the params digest is the one that code computed for the same
    batches (57fcd4a4…: the code of main before the piecewise writer, run on this fixture)."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    state, meta = checkpoint.load_file(FIXTURES / "v0003-lgbm.npz")
    model = make_model("lgbm", meta["params"])
    model.set_state(state)
    probe = np.asarray(expected["probe"])
    rng = np.random.default_rng(5)
    X = np.vstack([probe, rng.normal(size=(60, 3))])
    y = (X[:, 0] > 0.5).astype(int)
    for k in range(3):
        model.partial_fit(X + k, y)
    digest = checkpoint.params_digest(model.get_state())
    assert digest == "57fcd4a4bac750b9d32051fbdfb435b49d0a4a0979bcde2012b6287426496e4a"
    again, _ = checkpoint.loads(write(model), "new")  # and this writer's file reads back
    assert checkpoint.params_digest(again) == digest


def _head(storage: Storage, model: object, tmp: str) -> LineageHead:
    """A lineage head whose checkpoint is ``model``'s, saved under the storage root."""
    data, digest = lineage.save_bytes(model, ("a", "b", "c", "d", "e"), {"version": 1})
    final = f"runs/r/checkpoints/v0001-{tmp}.npz"
    path = storage.prepare(final, what="checkpoint")
    path.write_bytes(data)
    pub = Publication(staged=final, final=final, sha256=storage.sha256(final, what="checkpoint"))
    return LineageHead("r", 1, pub, tmp, "item", digest)


def test_a_kept_model_is_handed_over_once_and_only_for_its_own_verified_checkpoint(
    tmp_path: Path,
) -> None:
    """Given the model a step kept in memory: the next step gets that very object (its file
    verified); a second call, as a retry after a failed step would make, restores the file;
    another checkpoint, or a file changed since, never gets the kept model."""
    storage = Storage(tmp_path)
    config = lineage.ModelConfig(kind="lgbm", params=(("window", 3),)).resolved()
    inputs = ("a", "b", "c", "d", "e")
    model = make_model("lgbm", {"window": 3})
    for X, y in batches(3):
        model.partial_fit(X, y, classes=CLASSES)
    head = _head(storage, model, "2018-04-01")
    assert head.checkpoint is not None
    lineage.keep(model, inputs, head.checkpoint.sha256)
    assert lineage.continue_head(storage, head, config, inputs) is model
    model.partial_fit(*batches(1, seed=9)[0])  # the step changes it, then fails
    restored = lineage.continue_head(storage, head, config, inputs)
    assert restored is not model
    assert checkpoint.params_digest(restored.get_state()) == head.params_digest

    lineage.keep(model, inputs, "another checkpoint's sha256")
    assert lineage.continue_head(storage, head, config, inputs) is not model
    lineage.keep(restored, inputs, head.checkpoint.sha256)
    path = storage.resolve(head.checkpoint.final)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="does not match the sha256"):
        lineage.continue_head(storage, head, config, inputs)
    lineage.forget_kept()


def test_a_kept_model_asked_for_with_other_parameters_is_refused(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    inputs = ("a", "b", "c", "d", "e")
    model = make_model("lgbm", {"window": 3})
    model.partial_fit(*batches(1)[0], classes=CLASSES)
    head = _head(storage, model, "2018-04-01")
    assert head.checkpoint is not None
    lineage.keep(model, inputs, head.checkpoint.sha256)
    other = lineage.ModelConfig(kind="lgbm", params=(("window", 4),)).resolved()
    with pytest.raises(Exception, match="start a new run"):
        lineage.continue_head(storage, head, other, inputs)
    lineage.forget_kept()
