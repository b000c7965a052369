"""Reading a pack: YAML with ``!include``, where every value came from, and its problems.

Every value read is remembered with the file and line it came from, so a
problem found later (by the model or by the checker) is reported where the
author can fix it: ``intents.yaml:42: intents.order_status.lookup.tool: …``.
Mapping keys are read as the text written (``1:`` is the key "1", ``no:`` the
key "no"), duplicate keys are an error, and ``${NAME}`` / ``${NAME:-default}``
in a tool's URL is taken from the environment when the pack loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from threadline.core.errors import ConfigurationError

MAIN_FILE: Final = "business.yaml"
INCLUDE: Final = "!include"
#: libyaml's parser where PyYAML was built with it (ten times faster), else PyYAML's own.
LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Included files read as YAML; any other file is included as one text value.
YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
#: Files an include chain may open at most (a cycle is refused before this).
MAX_FILES: Final = 64
_ENV: Final = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a pack, and where."""

    file: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line else self.file
        return f"{at}: {self.where}: {self.message}" if self.where else f"{at}: {self.message}"


class PackError(ConfigurationError):
    """A pack that cannot be served; ``problems`` lists each with its file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid business pack"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


def dotted(path: Path_) -> str:
    """``("intents", "order_status", "examples", 0)`` as ``intents.order_status.examples[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(slots=True)
class Source:
    """The pack's folder, and the file and line of every value read."""

    root: Path
    marks: dict[Path_, tuple[str, int]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def where(self, path: Path_) -> tuple[str, int]:
        """The file and line of ``path``, or of the nearest value around it that was read."""
        known: Path_ = ()
        for part in path:
            if (*known, part) in self.marks:
                known = (*known, part)
        return self.marks.get(known, (MAIN_FILE, 0))

    def problem(self, path: Path_, message: str) -> Problem:
        file, line = self.where(path)
        return Problem(file, line, dotted(path), message)

    def relative(self, file: Path) -> str:
        try:
            return str(file.relative_to(self.root))
        except ValueError:
            return str(file)


class _Reader:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.scalars = yaml.SafeLoader("")
        self.opening: list[Path] = []

    def file(self, file: Path, path: Path_) -> Any:
        resolved = file.resolve()
        name = self.source.relative(resolved)
        if resolved in self.opening:
            raise PackError([Problem(name, 0, dotted(path), "includes itself")])
        if len(self.source.files) >= MAX_FILES:
            raise PackError([Problem(name, 0, dotted(path), f"more than {MAX_FILES} files")])
        try:
            text = resolved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise PackError([Problem(name, 0, dotted(path), f"cannot read: {reason}")]) from None
        self.source.files.append(resolved)
        try:
            node = yaml.compose(text, Loader=LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            raise PackError([Problem(name, line, "", f"not valid YAML: {exc.problem}")]) from None
        if node is None:
            raise PackError([Problem(name, 1, dotted(path), "is empty")])
        self.opening.append(resolved)
        try:
            return self.node(node, path, resolved, name)
        finally:
            self.opening.pop()

    def text(self, file: Path, path: Path_) -> str:
        """A file included as one text value (a long reply template, say)."""
        name = self.source.relative(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise PackError([Problem(name, 0, dotted(path), f"cannot read: {reason}")]) from None
        self.source.files.append(file)
        self.source.marks[path] = (name, 1)
        return text

    def node(self, node: yaml.Node, path: Path_, file: Path, name: str) -> Any:
        self.source.marks[path] = (name, node.start_mark.line + 1)
        if node.tag == INCLUDE:
            target = (file.parent / str(node.value)).resolve()
            if not target.is_relative_to(self.source.root.resolve()):
                raise PackError(
                    [Problem(name, node.start_mark.line + 1, dotted(path), "includes a file"
                             " outside the pack")]
                )  # fmt: skip
            line = node.start_mark.line + 1
            # Said where the include is written, which is where the author fixes it.
            if target in self.opening:
                again = f"includes {self.source.relative(target)} again (a cycle)"
                raise PackError([Problem(name, line, dotted(path), again)])
            if not target.is_file():
                missing = f"includes {node.value!r}, which is not a file in the pack"
                raise PackError([Problem(name, line, dotted(path), missing)])
            if target.suffix not in YAML_SUFFIXES:
                return self.text(target, path)
            return self.file(target, path)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line = key_node.start_mark.line + 1
                    raise PackError([Problem(name, line, dotted(path), "a key must be plain text")])
                key = str(key_node.value)
                if key in out:
                    line = key_node.start_mark.line + 1
                    raise PackError([Problem(name, line, dotted((*path, key)), "is given twice")])
                out[key] = self.node(value_node, (*path, key), file, name)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.node(item, (*path, i), file, name) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)


def pack_file(path: Path) -> Path:
    """The main file of the pack at ``path`` (its folder, or the file itself)."""
    return path / MAIN_FILE if path.is_dir() else path


def read(path: Path) -> tuple[dict[str, Any], Source]:
    """The pack's raw data and where each value came from; PackError if it is not YAML."""
    main = pack_file(path)
    source = Source(main.parent.resolve())
    if not main.exists():
        raise PackError([Problem(str(main), 0, "", "no such file (a pack is a folder with"
                                 f" {MAIN_FILE})")])  # fmt: skip
    data = _Reader(source).file(main, ())
    if not isinstance(data, dict):
        raise PackError([Problem(MAIN_FILE, 1, "", "must be a mapping of sections")])
    return data, source


def expand_environment(
    data: dict[str, Any], source: Source, environ: Mapping[str, str] | None = None
) -> list[Problem]:
    """Fill ``${NAME}`` in tool URLs from the environment, in place; the problems left."""
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    tools = data.get("tools")
    if not isinstance(tools, dict):
        return problems
    for name, tool in tools.items():
        if not isinstance(tool, dict) or not isinstance(tool.get("url"), str):
            continue

        def fill(match: re.Match[str], tool_name: str = name) -> str:
            value = env.get(match[1])
            if value is None and match[2] is None:
                problems.append(source.problem(
                    ("tools", tool_name, "url"), f"environment variable {match[1]} is not set"
                ))  # fmt: skip
                return match[0]
            return value if value is not None else str(match[2])

        tool["url"] = _ENV.sub(fill, tool["url"])
    return problems
