"""Small simulated fraud datasets for the end-to-end tests (simulated once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

from batchml.fraud.data import datasets
from batchml.fraud.data.simulate import SimulationConfig, simulate
from batchml.storage import Storage

SMALL = SimulationConfig(n_customers=150, n_terminals=300, n_days=40, seed=7)

#: each config's simulated days, written once in the first cache folder a test asked for
_SIMULATED: dict[SimulationConfig, Path] = {}


def _generated(config: SimulationConfig, cache_dir: Path) -> Path:
    """The folder holding ``config``'s simulated days (simulating them if no test did yet)."""
    source = _SIMULATED.get(config)
    if source is not None and (source / "datasets").is_dir():
        return source
    source = (
        cache_dir / f"sim-{config.n_customers}-{config.n_terminals}-{config.n_days}-{config.seed}"
    )
    storage = Storage(source)
    for day, part in datasets.split_days(simulate(config)):
        datasets.write_day(storage, day, part)
    _SIMULATED[config] = source
    return source


def small_root(cache_dir: Path, root: Path, config: SimulationConfig = SMALL) -> list[str]:
    """Copy the simulated days into ``root``/datasets; returns the days, in order.

    The days are simulated once per session and config, in the first ``cache_dir`` given (a
    temporary folder that lasts the session); the tests change their copy, never that one."""
    source = _generated(config, cache_dir)
    shutil.copytree(source / "datasets", root / "datasets", dirs_exist_ok=True)
    return datasets.training_days(Storage(root))
