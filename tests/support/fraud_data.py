"""Small simulated fraud datasets for the end-to-end tests (cached per session)."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.storage import Storage

SMALL = SimulationConfig(n_customers=150, n_terminals=300, n_days=40, seed=7)


@cache
def _generated(config: SimulationConfig, folder: str) -> list[str]:
    storage = Storage(folder)
    return [
        datasets.write_day(storage, day, part)
        for day, part in datasets.split_days(simulate(config))
    ]


def small_root(cache_dir: Path, root: Path, config: SimulationConfig = SMALL) -> list[str]:
    """Copy the simulated days into ``root``/datasets; returns the days, in order."""
    source = (
        cache_dir / f"sim-{config.n_customers}-{config.n_terminals}-{config.n_days}-{config.seed}"
    )
    _generated(config, str(source))
    shutil.copytree(source / "datasets", root / "datasets", dirs_exist_ok=True)
    return datasets.training_days(Storage(root))
