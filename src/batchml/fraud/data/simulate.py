"""Simulated card transactions, after the "Transaction data simulator" of Le Borgne et al.

The model is the one of *Reproducible Machine Learning for Credit Card Fraud Detection —
Practical Handbook*: customers and terminals live in a 100 × 100 square; each customer pays at
the terminals within ``radius`` of home, a Poisson number of times a day, around noon, amounts
drawn from a personal normal distribution. Three fraud scenarios then label the transactions, in
the handbook's order (a later one overwrites an earlier one):

1. any amount above 220 is a fraud;
2. every day two terminals are compromised for 28 days: all their transactions are frauds;
3. every day three customers are compromised for 14 days: a third of their transactions in that
   period, chosen at random, are multiplied by 5 and are frauds.

Everything is drawn with NumPy's ``Generator`` in whole arrays (no loop over customers,
transactions or days), from independent streams spawned from one seed, so a seed fixes the whole
table. The handbook's own code seeds Python's and NumPy's global generators per customer and per
day; the distributions are the same, the individual draws are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial import cKDTree

from batchml.errors import ConfigError
from batchml.fraud.data.schema import COLUMNS

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY_SECONDS = 86_400
_GRID_SIZE = 100.0
_MEAN_AMOUNT_RANGE = (5.0, 100.0)
_MEAN_TX_PER_DAY_RANGE = (0.0, 4.0)
_TIME_MEAN_SECONDS = 43_200.0
_TIME_STD_SECONDS = 20_000.0
_SCENARIO_1_THRESHOLD = 220.0
_SCENARIO_2_TERMINALS_PER_DAY = 2
_SCENARIO_2_DAYS = 28
_SCENARIO_3_CUSTOMERS_PER_DAY = 3
_SCENARIO_3_DAYS = 14
_SCENARIO_3_FACTOR = 5.0

# Independent random streams, one per stage, spawned in this order from the seed.
_STREAMS = (
    "customers",
    "terminals",
    "counts",
    "times",
    "amounts",
    "choices",
    "scenario2",
    "scenario3",
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: the handbook's defaults give ~1.75 M transactions over 183 days.

    ``start_date`` is the calendar day (``YYYY-MM-DD``) of day 0; ``radius`` is the distance
    within which a customer uses terminals; ``seed`` fixes every random draw.
    """

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_customers", "n_terminals", "n_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"simulation: {name} must be at least 1")
        if not self.radius > 0:
            raise ConfigError(f"simulation: radius must be positive, got {self.radius!r}")
        _day_zero(self.start_date)


def _day_zero(start_date: str) -> np.datetime64:
    """Midnight of ``start_date``, which must be a plain calendar day (ISO 8601, no time)."""
    try:
        day = date.fromisoformat(start_date)
    except (TypeError, ValueError):
        raise ConfigError(
            f"simulation: start_date must be a calendar day such as 2018-04-01, got {start_date!r}"
        ) from None
    return np.datetime64(day, "ns")


@dataclass(frozen=True)
class _Customers:
    xy: FloatArray  # (n, 2) locations
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_tx_per_day: FloatArray


@dataclass(frozen=True)
class _Reach:
    """The terminals each customer can use, CSR-style.

    Customer ``c`` uses ``terminals[offsets[c]:offsets[c + 1]]``.
    """

    offsets: IntArray
    terminals: IntArray

    @property
    def counts(self) -> IntArray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class _Transactions:
    """One entry per transaction, in time order once :func:`_sort_by_time` has run."""

    customer: IntArray
    terminal: IntArray
    day: IntArray
    seconds: IntArray  # since the start of day 0
    amount: FloatArray


def _spawn_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per stage, all derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(_STREAMS, children, strict=True)
    }


def _profiles(
    streams: dict[str, np.random.Generator], config: SimulationConfig
) -> tuple[_Customers, FloatArray]:
    """The customer profiles and the (n_terminals, 2) terminal locations."""
    customers = _customer_profiles(streams["customers"], config.n_customers)
    terminal_xy = streams["terminals"].uniform(0.0, _GRID_SIZE, size=(config.n_terminals, 2))
    return customers, terminal_xy


def _customer_profiles(rng: np.random.Generator, n: int) -> _Customers:
    xy = rng.uniform(0.0, _GRID_SIZE, size=(n, 2))
    mean_amount = rng.uniform(*_MEAN_AMOUNT_RANGE, size=n)
    mean_tx_per_day = rng.uniform(*_MEAN_TX_PER_DAY_RANGE, size=n)
    return _Customers(xy, mean_amount, mean_amount / 2, mean_tx_per_day)


def _terminals_in_reach(customer_xy: FloatArray, terminal_xy: FloatArray, radius: float) -> _Reach:
    """The terminals strictly closer than ``radius`` to each customer, sorted by id.

    A k-d tree finds the pairs without a dense customers × terminals distance matrix.
    """
    pairs = cKDTree(customer_xy).sparse_distance_matrix(
        cKDTree(terminal_xy), radius, output_type="ndarray"
    )
    pairs = pairs[pairs["v"] < radius]  # the handbook keeps distance < r; the tree gives <= r
    customer = pairs["i"].astype(np.int64)
    terminal = pairs["j"].astype(np.int64)
    order = np.lexsort((terminal, customer))
    counts = np.bincount(customer, minlength=len(customer_xy))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return _Reach(offsets, terminal[order])


def _draw_transactions(
    streams: dict[str, np.random.Generator],
    customers: _Customers,
    reach: _Reach,
    n_days: int,
) -> _Transactions:
    """Draw every customer's transactions of every day, in no particular order."""
    n_customers = len(customers.mean_amount)
    lam = np.where(reach.counts > 0, customers.mean_tx_per_day, 0.0)
    per_day = streams["counts"].poisson(lam, size=(n_days, n_customers))
    slot = np.repeat(np.arange(n_days * n_customers, dtype=np.int64), per_day.ravel())

    time_of_day = streams["times"].normal(_TIME_MEAN_SECONDS, _TIME_STD_SECONDS, size=len(slot))
    kept = (time_of_day >= 0) & (time_of_day < DAY_SECONDS)
    slot, time_of_day = slot[kept], time_of_day[kept]
    day, customer = np.divmod(slot, n_customers)

    amount = _draw_amounts(streams["amounts"], customers, customer)
    pick = streams["choices"].integers(0, reach.counts[customer])
    terminal = reach.terminals[reach.offsets[customer] + pick]
    seconds = day * DAY_SECONDS + np.floor(time_of_day).astype(np.int64)
    return _Transactions(customer, terminal, day, seconds, amount)


def _draw_amounts(
    rng: np.random.Generator, customers: _Customers, customer: IntArray
) -> FloatArray:
    """N(mean, std) per customer; a negative draw is replaced by U(0, 2·mean); cents rounded."""
    mean = customers.mean_amount[customer]
    amount = rng.normal(mean, customers.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2 * mean[negative])
    return np.round(amount, 2)


def _sort_by_time(tx: _Transactions) -> _Transactions:
    """Order by time; ties by customer, then by draw order (lexsort is stable)."""
    order = np.lexsort((tx.customer, tx.seconds))
    return _Transactions(
        tx.customer[order], tx.terminal[order], tx.day[order], tx.seconds[order], tx.amount[order]
    )


def _distinct_per_day(rng: np.random.Generator, n_days: int, k: int, n: int) -> IntArray:
    """For each day, ``k`` distinct ids drawn uniformly from ``0..n-1`` (all of them if n <= k).

    The j-th pick is a uniform rank among the ``n - j`` ids not yet taken, mapped to an id by
    stepping over the earlier picks in increasing order.
    """
    k = min(k, n)
    picks = np.empty((n_days, k), dtype=np.int64)
    for j in range(k):
        value = rng.integers(0, n - j, size=n_days)
        for taken in np.sort(picks[:, :j], axis=1).T:
            value += value >= taken
        picks[:, j] = value
    return picks


def _in_any_window(
    entity: IntArray, day: IntArray, hit: IntArray, n_days: int, length: int
) -> BoolArray:
    """Whether each transaction (entity, day) falls in the ``length``-day window of a hit.

    ``hit[s]`` lists the entities compromised on day ``s``, for days ``s .. s+length-1``. Each
    (entity, day) pair becomes one integer key in a block per entity, so one ``searchsorted``
    counts the compromises in ``day-length+1 .. day``.
    """
    stride = n_days + length
    hit_day = np.repeat(np.arange(len(hit), dtype=np.int64), hit.shape[1])
    keys = np.sort(hit.ravel() * stride + hit_day + length)
    base = entity * stride + day
    found = np.searchsorted(keys, base + length, "right") - np.searchsorted(keys, base + 1, "left")
    return found > 0


def _scenario_3_multiplicity(
    rng: np.random.Generator, tx: _Transactions, compromised: IntArray, n_days: int
) -> IntArray:
    """How many times each transaction is picked by scenario 3 (usually 0 or 1).

    Day ``s``'s compromised customers pool their transactions of days ``s .. s+13``, and
    ``len(pool) // 3`` of the pool is picked at random. Windows are independent, as in the
    handbook, so one transaction can be picked by two overlapping windows.
    """
    by_customer = np.argsort(tx.customer * n_days + tx.day, kind="stable")
    keys = (tx.customer * n_days + tx.day)[by_customer]
    window = np.repeat(np.arange(len(compromised), dtype=np.int64), compromised.shape[1])
    first = compromised.ravel() * n_days + window
    last = compromised.ravel() * n_days + np.minimum(window + _SCENARIO_3_DAYS - 1, n_days - 1)
    start = np.searchsorted(keys, first, "left")
    sizes = np.searchsorted(keys, last, "right") - start

    pair_window = np.repeat(window, sizes)
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    pair_tx = by_customer[np.repeat(start, sizes) + within]

    order = np.lexsort((rng.random(len(pair_tx)), pair_window))
    sorted_window = pair_window[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_window, sorted_window, "left")
    quota = np.bincount(pair_window, minlength=len(compromised)) // 3
    picked = pair_tx[order][rank < quota[sorted_window]]
    return np.bincount(picked, minlength=len(tx.day)).astype(np.int64)


def _add_frauds(
    streams: dict[str, np.random.Generator], tx: _Transactions, config: SimulationConfig
) -> tuple[FloatArray, IntArray]:
    """Apply the three scenarios in order; return the final amounts and the scenario per row."""
    scenario = np.where(tx.amount > _SCENARIO_1_THRESHOLD, 1, 0).astype(np.int64)

    terminals = _distinct_per_day(
        streams["scenario2"], config.n_days, _SCENARIO_2_TERMINALS_PER_DAY, config.n_terminals
    )
    at_risk = _in_any_window(tx.terminal, tx.day, terminals, config.n_days, _SCENARIO_2_DAYS)
    scenario[at_risk] = 2

    customers = _distinct_per_day(
        streams["scenario3"], config.n_days, _SCENARIO_3_CUSTOMERS_PER_DAY, config.n_customers
    )
    times = _scenario_3_multiplicity(streams["scenario3"], tx, customers, config.n_days)
    scenario[times > 0] = 3
    amount = np.round(tx.amount * np.power(_SCENARIO_3_FACTOR, times.astype(np.float64)), 2)
    return amount, scenario


def simulate(config: SimulationConfig) -> pd.DataFrame:
    """Simulate ``config.n_days`` days of card transactions, frauds labelled.

    Returns one frame with the columns and dtypes of :data:`batchml.fraud.data.schema.COLUMNS`,
    sorted by ``TX_DATETIME`` with ``TRANSACTION_ID`` = 0..N-1 in that order, on a RangeIndex.
    The same config always gives the same frame.
    """
    streams = _spawn_streams(config.seed)
    customers, terminal_xy = _profiles(streams, config)
    reach = _terminals_in_reach(customers.xy, terminal_xy, config.radius)
    tx = _sort_by_time(_draw_transactions(streams, customers, reach, config.n_days))
    amount, scenario = _add_frauds(streams, tx, config)

    start = _day_zero(config.start_date)
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(len(tx.day), dtype=np.int64),
            "TX_DATETIME": start + tx.seconds.astype("timedelta64[s]").astype("timedelta64[ns]"),
            "CUSTOMER_ID": tx.customer,
            "TERMINAL_ID": tx.terminal,
            "TX_AMOUNT": amount,
            "TX_TIME_SECONDS": tx.seconds,
            "TX_TIME_DAYS": tx.day,
            "TX_FRAUD": (scenario > 0).astype(np.int64),
            "TX_FRAUD_SCENARIO": scenario,
        }
    )
    return frame.astype(COLUMNS)
