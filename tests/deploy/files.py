"""Readers for the deployment files, as the tools that use them read them, for the tests beside this file.

- ``Dockerfile``: instructions with ``\\`` continuations joined and ``#`` comment lines dropped, ``ARG``s
  before the first ``FROM`` substituted into it, ``ENV KEY=VALUE ...`` words split as a shell would.
- ``.dockerignore``: moby's ``patternmatcher`` rules — patterns cleaned, the last matching one wins, ``!``
  lets a path back in, and a pattern that matches a parent directory matches everything under it.
- env files: ``KEY=value`` lines, ``#`` comments, the value taken as written (Compose and systemd alike
  for the plain values these files hold).
- systemd units: ``[Section]``, ``Key=value``; a key may repeat (``Environment=``, ``SystemCallFilter=``).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest)

    def all(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.instructions if ins == instruction]

    def one(self, instruction: str) -> str:
        found = self.all(instruction)
        assert len(found) == 1, f"{instruction}: {found}"
        return found[0]

    def env(self) -> dict[str, str]:
        """Every ``ENV KEY=VALUE`` of the stage, in order (the legacy ``ENV KEY VALUE`` form is refused)."""
        out: dict[str, str] = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {rest!r}: write KEY=VALUE"
                out[key] = value
        return out


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction is dropped, as BuildKit does
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1].instructions.append((instruction, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    """``["a", "b"]`` of CMD, ENTRYPOINT or HEALTHCHECK ... CMD: the exec form, never a shell string."""
    words = json.loads(rest)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), rest
    return words


# ------------------------------------------------------------------ .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """filepath.Match syntax plus ``**`` (any number of directories), as moby's patternmatcher has it."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def dockerignore(path: Path = ROOT / ".dockerignore") -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(line)))
    return rules


def excluded_from_context(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``relpath`` (relative to the context, ``/``-separated) out."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its parents
    excluded = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


# ------------------------------------------------------------------ env files and units


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{n}: not KEY=value: {raw!r}"
        assert value == value.strip() and not value.startswith(('"', "'")), f"{path.name}:{n}: {raw!r}"
        out[key] = value
    return out


Unit = dict[str, dict[str, list[str]]]


def systemd_unit(path: Path) -> Unit:
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{n}: keep each setting on one line"
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}:{n}: {raw!r}"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{n}: a setting before any [Section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{n}: not Key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
