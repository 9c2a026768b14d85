"""The model kinds' names, importable without loading scikit-learn or LightGBM (the CLI's
options need them at start-up; ``batchml.fraud.model.MODEL_KINDS`` maps them to classes)."""

from enum import StrEnum


class ModelKind(StrEnum):
    """The choices of ``--model``."""

    LGBM = "lgbm"
    SGD = "sgd"


DEFAULT_KIND = "lgbm"
KIND_NAMES = tuple(kind.value for kind in ModelKind)
