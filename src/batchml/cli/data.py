"""``batchml data``: generate simulated days, import datasets, list what is stored."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchml.cli.common import console, existing_root, settings
from batchml.cli.inspect_cmd import emit_json
from batchml.errors import ConfigError, DatasetError
from batchml.observe.progress import progress_bars
from batchml.storage import Storage

if TYPE_CHECKING:
    from batchml.fraud.data.simulate import SimulationConfig

app = typer.Typer(help="Datasets on the storage root.", no_args_is_help=True)


class DatasetKind(StrEnum):
    """The choices of ``data import --kind``."""

    TRAINING = "training"
    TESTING = "testing"


def day_option(value: str | None, option: str) -> str | None:
    """A YYYY-MM-DD option's value, checked: a usage error (exit 2) names the option."""
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a day: write it as YYYY-MM-DD (e.g. 2018-04-01)", param_hint=option
        ) from None


log = logging.getLogger("batchml.data")


#: what to do when ``data generate`` would replace stored days
REPLACE_HINT = (
    "pass --force to replace them (lineage versions trained on them keep the old data), or "
    "pick another --root"
)


def generate_days(
    storage: Storage, config: SimulationConfig, *, force: bool = False, hint: str = REPLACE_HINT
) -> list[str]:
    """Simulate and store daily datasets; shared by ``data generate`` and ``demo``.

    Nothing is written if a stored day would change (imported data, or other simulation
    settings), unless ``force``: the error names the first few days, their count and ``hint``."""
    from batchml.fraud.data import datasets
    from batchml.fraud.data.simulate import simulate

    with progress_bars() as bars:
        sim = bars.bar("simulating transactions", 1)
        frame = simulate(config)
        sim.advance()
        encode = bars.bar("encoding daily datasets", config.n_days)
        encoded: dict[str, bytes] = {}
        for day, part in datasets.split_days(frame):
            encoded[day] = datasets.frame_to_parquet_bytes(part)
            encode.advance()
        clash = [] if force else datasets.overwritten_days(storage, encoded)
        if clash:
            raise DatasetError(
                f"{len(clash)} day(s) already stored under {storage.dataset_dir('training')} "
                f"hold other data ({_first(clash)}); {hint}"
            )
        write = bars.bar("writing daily datasets", len(encoded))
        for day, data in encoded.items():
            storage.write_bytes(datasets.day_path(day), data)
            write.advance()
    written = list(encoded)
    if not written:
        raise ConfigError(
            f"the simulation produced no transaction ({config}); give more customers, "
            "terminals or days"
        )
    log.info(
        "generated %d days, %d transactions, %d frauds under %s",
        len(written), len(frame), int(frame["TX_FRAUD"].sum()), storage.dataset_dir("training"),
    )  # fmt: skip
    return written


def _first(days: list[str], n: int = 3) -> str:
    return ", ".join(days[:n]) + (" …" if len(days) > n else "")


@app.command("generate")
def generate(
    ctx: typer.Context,
    days: Annotated[
        int, typer.Option(envvar="BATCHML_DAYS", min=1, help="Days to simulate.")
    ] = 183,
    customers: Annotated[
        int, typer.Option(envvar="BATCHML_CUSTOMERS", min=1, help="Simulated card holders.")
    ] = 5000,
    terminals: Annotated[
        int,
        typer.Option(envvar="BATCHML_TERMINALS", min=1, help="Simulated payment terminals."),
    ] = 10000,
    seed: Annotated[
        int,
        typer.Option(
            envvar="BATCHML_SEED", help="Random seed of the simulation (same seed, same days)."
        ),
    ] = 0,
    start_date: Annotated[
        str,
        typer.Option(
            envvar="BATCHML_START_DATE",
            callback=lambda value: day_option(value, "--start-date"),
            help="First simulated day (YYYY-MM-DD).",
        ),
    ] = "2018-04-01",
    force: Annotated[bool, typer.Option(help="Replace stored days that hold other data.")] = False,
) -> None:
    """Simulate card transactions (Le Borgne et al.) and store one Parquet file per day."""
    from batchml.fraud.data.simulate import SimulationConfig

    config = SimulationConfig(
        n_customers=customers, n_terminals=terminals, n_days=days, start_date=start_date,
        seed=seed,
    )  # fmt: skip
    written = generate_days(settings(ctx).storage(), config, force=force)
    console.print(f"wrote {len(written)} daily datasets: {written[0]} … {written[-1]}")


def _readable_files(path: Path) -> list[Path]:
    """The dataset files of a folder (for the progress bar), or the path itself."""
    from batchml.fraud.data import datasets

    if not path.is_dir():
        return [path]
    found = sorted(f for f in path.rglob("*") if f.suffix.lower() in datasets.READABLE_SUFFIXES)
    return found or [path]  # an empty folder: import_files names the problem


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.parquet, .csv, .pkl).")],
    trust_pickle: Annotated[
        bool,
        typer.Option(
            envvar="BATCHML_TRUST_PICKLE",
            help="Accept pickled DataFrames from these local paths (read by a restricted "
            "unpickler that resolves only the pandas/NumPy/pyarrow reconstructors a DataFrame "
            "needs).",
        ),
    ] = False,
    kind: Annotated[
        DatasetKind | None,
        typer.Option(help="Where the files go (default: testing for test* names, else training)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace stored datasets with other content.")
    ] = False,
) -> None:
    """Validate datasets and store them as Parquet under <root>/datasets/."""
    from batchml.fraud.data import datasets  # lazily: the CLI starts without pandas

    storage = settings(ctx).storage()
    files = [f for p in paths for f in _readable_files(p)]
    done: list[datasets.Imported] = []
    with progress_bars() as bars:
        bar = bars.bar("importing files", len(files))
        for path in files:
            done += datasets.import_files(
                storage,
                [path],
                kind=kind.value if kind else None,
                trust_pickle=trust_pickle,
                force=force,
                on_file=lambda r: console.print(
                    f"{r.status:9} {r.target}  ({r.rows} rows from {r.source})"
                ),
            )
            bar.advance()
    console.print(f"imported {len(done)} dataset(s) into {storage.root / 'datasets'}")


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List stored training days and testing files.

    --json prints {"training": [YYYY-MM-DD, ...], "testing": [FILE.parquet, ...]}, sorted."""
    from batchml.fraud.data import datasets  # lazily: the CLI starts without pandas

    storage = existing_root(ctx).storage()
    days = datasets.training_days(storage)
    testing = storage.dataset_dir(datasets.TESTING)
    names = [p.name for p in sorted(testing.glob("*.parquet"))] if testing.is_dir() else []
    if as_json:
        emit_json({"training": days, "testing": names})
        return
    console.print(f"training: {len(days)} day(s)" + (f", {days[0]} … {days[-1]}" if days else ""))
    for name in names:
        console.print(f"testing:  {name}")
