"""The model kinds' names, importable without loading scikit-learn or LightGBM (the CLI's
options need them at start-up; ``batchml.fraud.models.model.MODEL_KINDS`` maps them to classes)."""

DEFAULT_KIND = "lgbm"
KIND_NAMES = ("lgbm", "sgd")
