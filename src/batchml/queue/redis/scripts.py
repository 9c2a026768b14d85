"""The queue's Lua code, in the two forms a server runs it: a function library or scripts.

``lua/<name>.lua`` is one operation, ``lua/prelude.lua`` the helpers they share. On Redis 7 and
later the queue calls them as Redis Functions (:func:`library_source`: the prelude and every
operation in one library, loaded once with ``FUNCTION LOAD``, each operation ``FCALL``-ed), so a
call no longer pays for building the prelude's closures; where Functions are missing (Redis 6)
or refused, each operation is a script of its own behind the prelude (:func:`script_source`),
called with ``EVALSHA``. Both forms run the same text, with the same KEYS and ARGV.

The library is named after a hash of its source (``batchml_<hash>``, its functions
``batchml_<hash>_<name>``): workers of two batchml versions on one server each call their own,
and loading never replaces another version's library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from batchml.queue.redis.keys import SCRIPT_KEYS

_SCRIPTS: dict[str, tuple[str, str]] = {}
_LIBRARY: list[tuple[str, str]] = []


def _lua(name: str) -> str:
    return resources.files("batchml.queue.redis").joinpath("lua", f"{name}.lua").read_text()


def script_source(name: str) -> tuple[str, str]:
    """The source of ``lua/<name>.lua`` as one script behind the shared prelude, and its SHA1."""
    if name not in _SCRIPTS:
        source = "local K = " + _key_binding(SCRIPT_KEYS[name], "KEYS") + "\n"
        source += _lua("prelude") + "\n"
        # the body runs as a function, so that the records it saved are written back (flush)
        # whichever of its returns it takes
        source += "local function main()\n" + _lua(name)
        source += "\nend\nlocal reply = main()\nflush()\nreturn reply\n"
        _SCRIPTS[name] = (source, hashlib.sha1(source.encode()).hexdigest())
    return _SCRIPTS[name]


def library_source() -> tuple[str, str]:
    """The function library: the prelude once, then each operation as ``batchml_<hash>_<name>``;
    and the library's name, ``batchml_<hash>``."""
    if not _LIBRARY:
        body = "local K, ARGV\n" + _lua("prelude") + "\n"
        for name, parts in SCRIPT_KEYS.items():
            body += f"local function op_{name}()\n{_lua(name)}\nend\n"
            body += (
                f"redis.register_function('@LIB@_{name}', function(keys, args)\n"
                f"  begin()\n  K, ARGV = {_key_binding(parts, 'keys')}, args\n"
                f"  local reply = op_{name}()\n  flush()\n  return reply\nend)\n"
            )
        library = "batchml_" + hashlib.sha1(body.encode()).hexdigest()[:16]
        _LIBRARY.append((f"#!lua name={library}\n" + body.replace("@LIB@", library), library))
    return _LIBRARY[0]


def _key_binding(parts: Sequence[str], keys: str) -> str:
    """The Lua table that names a script's KEYS by part: ``{items = KEYS[1], ...}``."""
    plain, states = [], []
    for index, part in enumerate(parts, start=1):
        if part.startswith("state:"):
            states.append(f"{part.removeprefix('state:')} = {keys}[{index}]")
        else:
            plain.append(f"{part.replace('-', '_')} = {keys}[{index}]")
    fields = [*plain, "state = {" + ", ".join(states) + "}"]
    return "{" + ", ".join(fields) + "}"


def _bulk(value: str | int | float) -> bytes:
    """One argument in the Redis protocol, encoded as redis-py encodes it."""
    data = value.encode() if isinstance(value, str) else repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Script:
    """One operation bound to the keys of one queue, with the fixed part of each of its two
    calls packed once: ``FCALL <function> <n> <keys>`` and ``EVALSHA <sha> <n> <keys>``."""

    name: str
    source: str  # the script (EVALSHA's form)
    sha: str
    fcall: bytes  # FCALL, the function's name, the number of keys and the keys, as bulk strings
    evalsha: bytes  # EVALSHA, the SHA1, the number of keys and the keys
    size: int  # how many arguments each head holds

    @classmethod
    def load(cls, name: str, keys: Sequence[str]) -> Script:
        """``lua/<name>.lua`` for a queue whose keys are ``keys`` (keys.SCRIPT_KEYS order)."""
        source, sha = script_source(name)
        function = f"{library_source()[1]}_{name}"
        fcall: list[str | int] = ["FCALL", function, len(keys), *keys]
        evalsha: list[str | int] = ["EVALSHA", sha, len(keys), *keys]
        return cls(
            name, source, sha, b"".join(_bulk(p) for p in fcall),
            b"".join(_bulk(p) for p in evalsha), len(fcall),
        )  # fmt: skip


def packed(head: bytes, size: int, args: Sequence[str | int | float]) -> bytes:
    """A whole call: ``head`` (``size`` arguments) and then ``args``, in the Redis protocol."""
    return b"*%d\r\n" % (size + len(args)) + head + b"".join(_bulk(arg) for arg in args)
