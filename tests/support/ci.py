"""What a test does when a tool it needs is missing: fail in CI, skip elsewhere."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to 1, true or yes)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """A required tool is missing: the test fails in CI (where set-up installs it) and is
    skipped with ``message`` elsewhere."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
