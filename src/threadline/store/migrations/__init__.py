"""Versioned schema migrations, one folder per backend."""

from __future__ import annotations

from importlib import resources


def migrations(backend: str) -> list[tuple[int, str]]:
    """``(version, sql)`` for each migration of ``backend``, in order."""
    folder = resources.files("threadline.store.migrations") / backend
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)
