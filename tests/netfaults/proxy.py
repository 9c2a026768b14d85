"""A small userspace TCP proxy, the test's link emulator (the kernel here has no netem).

It listens in one namespace and connects onward in another, both given as (namespace, host,
port). Its faults, switched at any time from the test's thread:

* ``delay(mean, jitter)``: every chunk is held ``mean ± jitter`` seconds (uniform), in order;
* ``drop()``: every open connection is reset at once (new ones are accepted as usual);
* ``blackhole()``: nothing is forwarded any more, nothing is closed (the peers see silence,
  as with a dead route); ``heal()`` forwards what was held and carries on.

It runs its own asyncio loop on a daemon thread; ``close()`` stops it and resets everything.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from dataclasses import dataclass, field

from tests.netfaults.netns import socket_in

Endpoint = tuple[str | None, str, int]  # (namespace or None for the test's own, host, port)
CHUNK = 65536


@dataclass
class ProxyStats:
    connections: int = 0
    dropped: int = 0
    chunks: int = 0
    blackholes: int = 0


@dataclass(eq=False)
class _Conn:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class TcpProxy:
    def __init__(self, listen: Endpoint, upstream: Endpoint, seed: int = 0) -> None:
        self.listen, self.upstream = listen, upstream
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._delay = (0.0, 0.0)
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._healed: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise self._failed

    @property
    def port(self) -> int:
        return self.listen[2]

    # -- controls (any thread) ---------------------------------------------------------------

    def delay(self, mean: float, jitter: float = 0.0) -> None:
        self._delay = (mean, jitter)

    def drop(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_all)

    def blackhole(self) -> None:
        self.stats.blackholes += 1
        self._loop.call_soon_threadsafe(self._set_healed, False)

    def heal(self) -> None:
        self._delay = (0.0, 0.0)
        self._loop.call_soon_threadsafe(self._set_healed, True)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._stop)
        self._thread.join(10)

    # -- the loop ----------------------------------------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._healed = asyncio.Event()
        self._healed.set()
        self._stopped = asyncio.Event()
        try:
            netns, host, port = self.listen
            sock = socket_in(netns)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            if port == 0:
                self.listen = (netns, host, sock.getsockname()[1])
            server = await asyncio.start_server(self._accept, sock=sock)
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        async with server:
            await self._stopped.wait()
        self._drop_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _stop(self) -> None:
        self._stopped.set()

    def _set_healed(self, healed: bool) -> None:
        assert self._healed is not None
        if healed:
            self._healed.set()
        else:
            self._healed.clear()

    def _drop_all(self) -> None:
        for conn in list(self._conns):
            self.stats.dropped += 1
            for writer in conn.writers:
                writer.transport.abort()  # a reset, as a dead middlebox or peer restart gives
        self._conns.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn([writer])
        self._conns.add(conn)
        self.stats.connections += 1
        assert self._healed is not None
        try:
            await self._healed.wait()  # a black hole does not even connect onward
            netns, host, port = self.upstream
            sock = socket_in(netns)
            sock.setblocking(False)
            await self._loop.sock_connect(sock, (host, port))
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except OSError:
            writer.transport.abort()
            self._conns.discard(conn)
            return
        conn.writers.append(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in conn.writers:
            w.transport.abort()
        self._conns.discard(conn)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one direction: each chunk is due ``delay`` after it arrived (in order, never
        before the one ahead of it), and waits out any black hole."""
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(held, writer))
        try:
            due = 0.0
            while not sender.done():
                data = await reader.read(CHUNK)
                mean, jitter = self._delay
                now = self._loop.time()
                due = max(now + max(mean + self._rng.uniform(-jitter, jitter), 0.0), due)
                held.put_nowait((due, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()

    async def _send(
        self, held: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        assert self._healed is not None
        while True:
            due, data = await held.get()
            await asyncio.sleep(max(due - self._loop.time(), 0.0))
            await self._healed.wait()
            if not data or writer.transport.is_closing():
                writer.transport.abort()
                return
            self.stats.chunks += 1
            writer.write(data)
            await writer.drain()
