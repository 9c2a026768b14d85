"""What a Docker build of deploy/Dockerfile would see: its instructions and the build context.

No container engine runs on our machines, so the tests read the Dockerfile instead: the COPY
sources (from the context, not from another stage) and the stages' base images, and decide
which files the context keeps with Docker's own .dockerignore rules (moby/patternmatcher:
patterns relative to the context root, ``**`` for any number of folders, ``!`` to re-include,
the last matching pattern wins, and a pattern matching a folder matches everything in it).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """The instructions, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    found = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    return found


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of COPY/ADD instructions that read the build context (not ``--from=``)."""
    sources: list[str] = []
    for ins in instructions(dockerfile):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(ins.args)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources.extend(paths[:-1])  # the last word is the destination
    return sources


def base_images(dockerfile: Path) -> list[str]:
    """Each stage's base image, with ``${ARG}`` defaults substituted; stage names skipped."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for ins in instructions(dockerfile):
        if ins.keyword == "ARG" and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            args[key.strip()] = value.strip()
        elif ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--platform")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            if image not in stages:
                images.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


def _patterns(dockerignore: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per pattern, in file order."""
    found = []
    for raw in dockerignore.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        found.append((not negated, _pattern_regex(cleaned)))
    return found


def excluded(dockerignore: Path, relpath: str) -> bool:
    """Whether the build context leaves out ``relpath`` (a file, relative to the context)."""
    path = PurePosixPath(relpath)
    candidates = [str(path), *(str(p) for p in path.parents if str(p) != ".")]
    verdict = False
    for excludes, regex in _patterns(dockerignore):
        if any(regex.match(c) for c in candidates):
            verdict = excludes
    return verdict
