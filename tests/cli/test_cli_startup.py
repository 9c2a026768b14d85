"""The CLI starts without the heavy fraud stack: probes (`worker --check`), `--help` and
`queue status` must not pay for pandas, scikit-learn or LightGBM."""

from __future__ import annotations

import subprocess
import sys

from batchml.fraud.models.kinds import DEFAULT_KIND, KIND_NAMES
from batchml.fraud.models.model import MODEL_KINDS


def test_importing_the_cli_loads_no_ml_library() -> None:
    code = (
        "import sys, batchml.cli.main; "
        "print(sorted(m for m in ('pandas', 'sklearn', 'lightgbm', 'scipy', 'pyarrow') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_light_kind_names_match_the_model_registry() -> None:
    assert set(KIND_NAMES) == set(MODEL_KINDS) and DEFAULT_KIND in MODEL_KINDS
