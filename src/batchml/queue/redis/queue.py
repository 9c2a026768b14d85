"""The Redis queue: one queue shared by N workers on N machines.

Select it with ``--queue redis://[user:password@]host:port/db[?name=QUEUE]`` (or ``rediss://``
for TLS); see :mod:`~batchml.queue.redis.url` and :mod:`~batchml.queue.redis.errors`.

Every state change is one round trip: one Lua script per operation (``queue/redis/lua/*.lua``,
each headed by its KEYS and ARGV), all loaded once as a Redis Functions library and called with
FCALL (on Redis 6, or when the ACL refuses Functions, each is a script called with EVALSHA); a
server that forgot them, after a restart, gets them again (:mod:`~batchml.queue.redis.caller`).
A script receives the keys it uses as KEYS, all hash-tagged so a queue lives in one Redis
Cluster slot (:mod:`batchml.queue.redis.keys` names them all). Expired leases and due retries
are found through sorted sets of deadlines: ``lease`` costs O(log n + expired), never a scan. A
commit and its lineage compare-and-set are one script: both land or neither does;
``complete_and_lease`` adds the worker's next lease to that script, so a worker pays one round
trip per item.

Data: an item is one record (MessagePack, payload and commit included) that only the scripts
read and write; they hand items to the client as one JSON array each. Each state has a single
index (see ``prelude.lua``), so a state change touches few keys. Dependencies are strict: a dead
item blocks its dependents (``state:blocked``) in the same script that kills it; requeueing it
resolves them again (``prelude.lua``: mark_dead, resolve, settle_dependents).

For KEDA: ``batchml:{QUEUE}:ready`` is a list whose ``LLEN`` is the number of items in state
``ready`` (its elements are placeholders), so KEDA's ``redis`` scaler can use it as ``listName``.

Time: scripts take "now" from the queue's clock when one was injected (tests move a fake clock),
otherwise from the Redis server (``TIME``), so workers on machines whose clocks disagree still
agree on every lease deadline. Times are kept in milliseconds.

Durability: run Redis with ``appendonly yes`` and ``appendfsync always`` (as the Kubernetes
manifests do): a killed or restarted Redis then loses nothing acknowledged. With ``everysec``
(Redis' default) a machine crash can lose the last second or two of writes, and so can a killed
Redis on a busy disk (Redis postpones the AOF write while a background fsync runs).
A Redis that lost its data anyway is recognised: the first push sets the queue's generation key
(``batchml:{QUEUE}:generation``), and a worker that finds it changed or gone exits 65.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from batchml.errors import LeaseLost, LineageConflict, QueueError, QueueUnavailable, UnknownItem
from batchml.queue import ConnectOptions
from batchml.queue.base import (
    MAX_BATCH,
    WORKER_RETENTION,
    AttemptRecord,
    Commit,
    Item,
    ItemSpec,
    Lease,
    LineageHead,
    LineageStep,
    Outcome,
    PushOutcome,
    QueueOptions,
    State,
    WorkerInfo,
    WorkQueue,
    canonical_json,
)
from batchml.queue.redis.caller import ScriptCaller
from batchml.queue.redis.errors import translate
from batchml.queue.redis.keys import SCRIPT_KEYS, QueueKeys, lineage_field
from batchml.queue.redis.scripts import Script
from batchml.queue.redis.url import RedisAddress, connect, parse_url
from batchml.storage import Publication

#: ended attempts kept in the history list; older ones are trimmed as new ones arrive
HISTORY_LIMIT = 10_000


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _seconds(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000


def _committed(result: dict[str, Any] | None, outputs: Sequence[Publication]) -> str:
    """What a commit keeps of its attempt: the result and the outputs to publish ('' if none)."""
    if result is None and not outputs:
        return ""
    return canonical_json({"result": result, "outputs": [p.to_json() for p in outputs]})


def _item(view: str) -> Item:
    """An Item from the JSON array a script hands out (``view`` in prelude.lua, same order)."""
    (item_id, state, attempts, max_attempts, priority, token, worker, deadline, available_at,
     last_error, created_at, updated_at, deps, payload, done) = json.loads(view)  # fmt: skip
    return Item(
        id=item_id,
        payload=payload,
        state=State(state),
        attempts=int(attempts),
        max_attempts=int(max_attempts),
        priority=int(priority),
        depends_on=tuple(deps),
        token=int(token),
        worker=worker,
        deadline=_seconds(deadline),
        available_at=available_at / 1000,
        last_error=last_error,
        result=done["result"] if done else None,
        outputs=tuple(Publication.from_json(p) for p in done["outputs"]) if done else (),
        created_at=created_at / 1000,
        updated_at=updated_at / 1000,
    )


def reset_refusal(reply: list[Any], run: str, to_version: int, url: str) -> QueueError:
    """The exception for a refusal of reset_lineage.lua."""
    if reply[0] == "conflict":
        return LineageConflict(
            f"lineage {run!r}: the head moved (to version {reply[1]}) during the reset; retry"
        )
    if reply[0] == "no-version":
        return QueueError(f"lineage {run!r} has no version {to_version} in {url}")
    if reply[0] == "unknown":
        return UnknownItem(f"no item {reply[1]!r} in {url}")
    if reply[0] == "leased":
        return QueueError(
            f"item {reply[1]} of run {run!r} is leased: a running step would commit against "
            "the moved head; stop the workers (or wait until they finish) and retry"
        )
    if reply[0] == "dependent":
        return QueueError(
            f"item {reply[1]} is ready or leased and depends on {reply[2]}, which the reset "
            "re-arms; re-arm it too"
        )
    return QueueError(f"{url}: unexpected reply {reply!r} to reset_lineage")


class RedisQueue(WorkQueue):
    """A WorkQueue in Redis, every state change one Lua script."""

    def __init__(
        self, client: redis.Redis, address: RedisAddress, options: QueueOptions | None = None
    ) -> None:
        super().__init__(options)
        self.address = address
        self.url = address.url
        self.keys = QueueKeys(address.name)
        self._client = client
        self._scripting = ScriptCaller(client)
        self._scripts = {
            name: Script.load(name, self.keys.for_script(name)) for name in SCRIPT_KEYS
        }
        self._lease_retry: dict[str, str] = {}
        self._requests = (f"{uuid.uuid4().hex[:12]}-{n}" for n in itertools.count(1))

    @classmethod
    def from_url(
        cls,
        url: str,
        options: QueueOptions | None = None,
        connect_options: ConnectOptions | None = None,
    ) -> RedisQueue:
        address = parse_url(url)
        return cls(connect(address, connect_options or ConnectOptions()), address, options)

    # -- plumbing ----------------------------------------------------------------------------

    def _now(self) -> str:
        """The time scripts use: the injected clock in ms, or '' for the server's clock."""
        return "" if self.clock is time.time else str(_ms(self.clock()))

    def _run(self, name: str, *args: str | int | float) -> Any:
        script = self._scripts[name]
        try:
            return self._scripting.call(script, args)
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None

    def _read(self, commands: Any) -> list[Any]:
        """Run read commands in one MULTI/EXEC round trip: ``commands(pipeline)`` queues them."""
        try:
            with self._client.pipeline(transaction=True) as pipe:
                commands(pipe)
                return list(pipe.execute())
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None

    def _refused(
        self, reply: list[Any], item_id: str, token: int, lineage: LineageStep | None = None
    ) -> QueueError:
        """The exception for a script's refusal ({'lost', state, token} and the like)."""
        if reply[0] == "unknown":
            return UnknownItem(f"no item {item_id!r} in {self.url}")
        if reply[0] == "expired":
            return LeaseLost(f"item {item_id}: lease expired before this heartbeat")
        if reply[0] == "lost":
            return LeaseLost(
                f"item {item_id}: lease token {token} is no longer current "
                f"(state {reply[1]}, token {reply[2]}); another worker owns it now"
            )
        if reply[0] == "conflict" and lineage is not None:
            return LineageConflict(
                f"lineage {lineage.head.run!r}: head is version {reply[1]}, the step was "
                f"computed from version {lineage.expected_version}"
            )
        return QueueError(f"{self.url}: unexpected reply {reply!r} for item {item_id}")

    def close(self) -> None:
        self._scripting.close()
        self._client.close()

    # -- producers ---------------------------------------------------------------------------

    def push(self, specs: Sequence[ItemSpec], *, force: bool = False) -> list[PushOutcome]:
        args: list[str | int] = [self._now(), int(force), self.retry.max_attempts]
        for spec in specs:
            deps = list(dict.fromkeys(spec.depends_on))
            args += [
                spec.item_id,
                canonical_json(spec.payload),
                spec.priority,
                spec.max_attempts or "",
                json.dumps(deps),
            ]
        args.append(uuid.uuid4().hex)  # the queue's generation, if it has none yet
        reply = self._run("push", *args)
        if reply[0] == "missing":
            raise QueueError(
                f"item {reply[1]}: dependency {reply[2]!r} is not in the queue; push it first"
            )
        if reply[0] == "cycle":
            raise QueueError(
                f"item {reply[1]}: depending on {reply[2]!r} would make a cycle ({reply[2]} "
                f"already depends on {reply[1]}); push it with other dependencies"
            )
        return [PushOutcome(outcome) for outcome in reply[1:]]

    # -- workers -----------------------------------------------------------------------------

    def lease(self, worker: str, ttl: float) -> Lease | None:
        # A lease whose reply was lost is asked for again with the same request id, and the
        # script hands back the same lease instead of leaving it to expire.
        request, retry = self._request(worker)
        args = (self._now(), worker, _ms(ttl), request, retry, HISTORY_LIMIT)
        return self._lease_from(self._leasing(worker, request, "lease", *args), worker)

    def lease_many(self, worker: str, ttl: float, n: int) -> list[Lease]:
        if n < 1:
            return []
        request, retry = self._request(worker)
        args = (self._now(), worker, _ms(ttl), request, retry, HISTORY_LIMIT, min(n, MAX_BATCH))
        return self._leases_from(self._leasing(worker, request, "lease", *args), worker)

    def heartbeat(self, item_id: str, token: int, ttl: float) -> float:
        reply = self._run("heartbeat", self._now(), item_id, token, _ms(ttl))
        if reply[0] != "ok":
            raise self._refused(reply, item_id, token)
        return float(reply[1]) / 1000

    def complete(
        self,
        item_id: str,
        token: int,
        result: dict[str, Any] | None = None,
        *,
        outputs: Sequence[Publication] = (),
        lineage: LineageStep | None = None,
    ) -> None:
        committed = _committed(result, outputs)
        reply = self._run(
            "complete", self._now(), item_id, token, committed, HISTORY_LIMIT,
            *self._lineage_args(lineage),
        )  # fmt: skip
        if reply[0] != "ok":
            raise self._refused(reply, item_id, token, lineage)

    def complete_and_lease(
        self,
        item_id: str,
        token: int,
        result: dict[str, Any] | None = None,
        *,
        outputs: Sequence[Publication] = (),
        lineage: LineageStep | None = None,
        worker: str,
        ttl: float,
    ) -> Lease | None:
        # One script. A retry after a lost reply reuses the request id: if the earlier call
        # committed and leased, the script returns that lease; if it committed and found
        # nothing to lease, the retry is refused as stale, as a retried ``complete`` is.
        request, retry = self._request(worker)
        reply = self._leasing(
            worker, request, "complete_and_lease", self._now(), item_id, token,
            _committed(result, outputs), HISTORY_LIMIT, worker, _ms(ttl), request, retry,
            *self._lineage_args(lineage),
        )  # fmt: skip
        if reply[0] not in ("ok", "none"):
            raise self._refused(reply, item_id, token, lineage)
        return self._lease_from(reply, worker)

    def complete_and_lease_many(
        self, commits: Sequence[Commit], *, worker: str, ttl: float, n: int
    ) -> list[Lease]:
        # One script: every commit is checked before any is written (all or none). A retry
        # after a lost reply reuses the request id, as complete_and_lease's does.
        if len(commits) > MAX_BATCH:
            raise QueueError(f"{len(commits)} commits in one batch: at most {MAX_BATCH}")
        request, retry = self._request(worker)
        args: list[str | int] = [
            self._now(), HISTORY_LIMIT, worker, _ms(ttl), request, retry, min(max(n, 0), MAX_BATCH)
        ]  # fmt: skip
        for c in commits:
            args += [c.item_id, c.token, _committed(c.result, c.outputs)]
            step = self._lineage_args(c.lineage)
            args += ["1", *step] if step else ["0"]
        reply = self._leasing(worker, request, "commit_and_lease", *args)
        if reply[0] == "refused":
            c = commits[int(reply[1]) - 1]
            raise self._refused(reply[2:], c.item_id, c.token, c.lineage)
        if reply[0] not in ("ok", "none"):
            raise QueueError(f"{self.url}: unexpected reply {reply!r} to a batch commit")
        return self._leases_from(reply, worker)

    def _request(self, worker: str) -> tuple[str, int]:
        """The request id of the next leasing call: the one whose reply was lost, if any
        (then the call is a retry: 1), else a new one."""
        retry = self._lease_retry.pop(worker, None)
        return (retry, 1) if retry else (next(self._requests), 0)

    def _leasing(self, worker: str, request: str, name: str, *args: str | int) -> Any:
        """Run a script that may lease; if its reply is lost, remember its request id."""
        try:
            return self._run(name, *args)
        except QueueUnavailable:
            self._lease_retry[worker] = request
            raise

    def _lineage_args(self, lineage: LineageStep | None) -> list[str | int]:
        if lineage is None:
            return []
        head = LineageHead.from_json({**lineage.head.to_json(), "created_at": self.clock()})
        return [
            head.run,
            lineage.expected_version,
            lineage_field(head.run, head.version),
            canonical_json(head.to_json()),
        ]

    @classmethod
    def _lease_from(cls, reply: list[Any], worker: str) -> Lease | None:
        leases = cls._leases_from(reply, worker)
        return leases[0] if leases else None

    @staticmethod
    def _leases_from(reply: list[Any], worker: str) -> list[Lease]:
        """The leases of a reply {'ok', view...} | {'none'}."""
        leases = []
        for view in reply[1:] if reply[0] == "ok" else ():
            item = _item(view)
            assert item.deadline is not None, "a leased item has a deadline"
            leases.append(Lease(item=item, token=item.token, worker=worker, deadline=item.deadline))
        return leases

    def fail(self, item_id: str, token: int, error: str, *, permanent: bool = False) -> State:
        retry = self.retry
        reply = self._run(
            "fail", self._now(), item_id, token, error, HISTORY_LIMIT,
            _ms(retry.backoff_base), retry.backoff_factor, _ms(retry.backoff_cap),
            int(permanent),
        )  # fmt: skip
        if reply[0] != "ok":
            raise self._refused(reply, item_id, token)
        return State(reply[1])

    def release(self, item_id: str, token: int) -> None:
        reply = self._run("release", self._now(), item_id, token, HISTORY_LIMIT)
        if reply[0] != "ok":
            raise self._refused(reply, item_id, token)

    # -- inspection and administration -------------------------------------------------------

    def get(self, item_id: str) -> Item:
        reply = self._run("get", item_id)
        if reply[0] != "ok":
            raise UnknownItem(f"no item {item_id!r} in {self.url}")
        return _item(reply[1])

    def items(self, states: Iterable[State] | None = None, limit: int | None = None) -> list[Item]:
        wanted = [State(s).value for s in states] if states is not None else []
        if states is not None and not wanted:
            return []
        return [_item(view) for view in self._run("items", limit or 0, *wanted)]

    def counts(self) -> dict[State, int]:
        k = self.keys

        def count(pipe: Any) -> None:  # each state's index (keys.PARTS), in State's order
            pipe.zcard(k.state("waiting")).llen(k.ready_list).zcard(k.key("deadlines"))
            pipe.zcard(k.state("done")).zcard(k.state("dead")).zcard(k.state("blocked"))

        numbers = self._read(count)
        return {state: int(n) for state, n in zip(State, numbers, strict=True)}

    def lineage_head(self, run: str) -> LineageHead:
        try:
            raw = self._client.hget(self.keys.key("lineage-head"), run)
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None
        return LineageHead.from_json(json.loads(raw)) if raw else LineageHead(run=run)

    def lineage(self, run: str) -> list[LineageHead]:
        version = self.lineage_head(run).version
        if version == 0:
            return []
        fields = [lineage_field(run, v) for v in range(1, version + 1)]
        [heads] = self._read(lambda p: p.hmget(self.keys.key("lineage"), fields))
        return [LineageHead.from_json(json.loads(h)) for h in heads if h]

    def history(self, limit: int = 1000) -> list[AttemptRecord]:
        [rows] = self._read(lambda p: p.lrange(self.keys.key("history"), -limit, -1))
        records = []
        for row in rows:
            r = json.loads(row)
            records.append(
                AttemptRecord(
                    item_id=r["item_id"],
                    token=int(r["token"]),
                    worker=r["worker"],
                    started_at=float(r["started_at"]) / 1000,
                    ended_at=float(r["ended_at"]) / 1000,
                    outcome=Outcome(r["outcome"]),
                    error=r.get("error"),
                )
            )
        return records

    def report_worker(self, info: WorkerInfo) -> None:
        self._run(
            "report_worker", self._now(), info.id, canonical_json(info.to_json()),
            _ms(WORKER_RETENTION),
        )  # fmt: skip

    def workers(self) -> list[WorkerInfo]:
        workers, seen_key = self.keys.key("workers"), self.keys.key("workers-seen")
        reports, seen = self._read(
            lambda p: p.hgetall(workers).zrange(seen_key, 0, -1, withscores=True)
        )
        last_seen = {worker: float(ms) / 1000 for worker, ms in seen}
        found = [
            WorkerInfo.from_json({**json.loads(raw), "last_seen": last_seen.get(worker, 0.0)})
            for worker, raw in reports.items()
        ]
        return sorted(found, key=lambda w: (-w.last_seen, w.id))

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        which = ["1"] if ids is None else ["0", *ids]
        reply = self._run("requeue_dead", self._now(), *which)
        return int(reply[1])

    def purge(self) -> None:
        try:
            self._client.delete(*self.keys.all)
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None

    # -- identity and lineage recovery -------------------------------------------------------

    def generation(self) -> str | None:
        try:
            value = self._client.get(self.keys.key("generation"))
        except redis.RedisError as exc:
            raise translate(exc, self.address) from None
        return str(value) if value else None

    def reset_lineage(self, run: str, to_version: int, rearm: Sequence[str]) -> None:
        current = self.lineage_head(run).version
        if not 0 <= to_version <= current:
            raise QueueError(
                f"lineage {run!r} has versions 0 to {current}; cannot reset it to {to_version}"
            )
        drop = [lineage_field(run, v) for v in range(to_version + 1, current + 1)]
        target = lineage_field(run, to_version) if to_version else ""
        reply = self._run(
            "reset_lineage", self._now(), run, to_version, current, target, len(drop), *drop,
            *rearm,
        )  # fmt: skip
        if reply[0] != "ok":
            raise reset_refusal(reply, run, to_version, self.url)
