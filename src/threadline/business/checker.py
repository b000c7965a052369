"""Checking a pack: the model's own rules, then every cross-reference, template and file.

:func:`load` reads, expands, validates and checks a pack and returns the
:class:`Business`, or raises :class:`PackError` listing every problem found
(not only the first), each with its file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pydantic

from threadline.business.business import Business
from threadline.business.checks import CHECKS
from threadline.business.defaults import DEFAULT_REPLIES
from threadline.business.loader import PackError, Problem, Source, expand_environment, read
from threadline.business.model import Pack
from threadline.core.errors import ConfigurationError


def _written(data: Any, loc: tuple[Any, ...], missing: bool) -> tuple[str | int, ...]:
    """``loc`` as keys the author wrote: the names pydantic gives union members (``http``,
    ``str``) are left out; a missing key, named last, is kept."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        written = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if written:
            node = node[part]
        elif not (missing and index == len(loc) - 1):
            continue
        path.append(part)
    return tuple(path)


def _pydantic_problems(
    exc: pydantic.ValidationError, source: Source, data: dict[str, Any]
) -> list[Problem]:
    out = []
    for error in exc.errors(include_url=False):
        path = _written(data, tuple(error["loc"]), error["type"] == "missing")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known key"
        elif error["type"] == "missing":
            message = "is required"
        out.append(source.problem(path, message))
    return out


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The pack's data with the product's default replies under its own."""
    replies = data.get("replies")
    if replies is None or isinstance(replies, dict):
        data["replies"] = {**DEFAULT_REPLIES, **(replies or {})}
    return data


def load(path: Path, environ: Mapping[str, str] | None = None) -> Business:
    """The business in the pack at ``path``; PackError with every problem otherwise."""
    data, source = read(path)
    problems = expand_environment(data, source, environ)
    try:
        pack = Pack.model_validate(with_defaults(data))
    except pydantic.ValidationError as exc:
        # A value left unfilled (an unset ${VAR}) is not reported again as malformed.
        unfilled = {p.where for p in problems}
        model = [p for p in _pydantic_problems(exc, source, data) if p.where not in unfilled]
        raise PackError(problems + model) from None
    for check in CHECKS:
        problems.extend(check(pack, source))
    if problems:
        raise PackError(problems)
    return Business(pack, source.root, tuple(source.files))


def load_configured(path: Path | None, environ: Mapping[str, str] | None = None) -> Business:
    """The business the service is configured to serve (``THREADLINE_BUSINESS``)."""
    if path is None:
        raise ConfigurationError(
            "no business pack: set THREADLINE_BUSINESS or pass --business PATH"
            " (the example packs are in examples/)"
        )
    return load(path, environ)


def json_schema() -> bytes:
    """The pack format as JSON Schema, for editors."""
    schema = Pack.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Threadline business pack"
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
