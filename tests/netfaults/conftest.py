"""Fixtures of the network fault tests: a private network per test, removed even on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netfaults.harness import Net
from tests.netfaults.netns import require_netns


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A hub running Redis; add hosts with ``net.add_host()``."""
    require_netns()
    network = Net(tmp_path / "net")
    try:
        yield network
    finally:
        network.close()
