"""Store backends: SQLite (embedded default) and PostgreSQL, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlparse

from threadline.core.errors import ConfigurationError
from threadline.core.ports import Storage


async def open_store(url: str, *, schema: str | None = None) -> Storage:
    """Open the store that ``url`` names: ``sqlite:///path`` or ``postgresql://…``."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from threadline.store.sqlite import open_sqlite

        # sqlite:///relative/file.db, sqlite:////absolute/file.db (as SQLAlchemy reads them)
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(f"{url!r} names no file: use sqlite:///var/threadline.db")
        return await open_sqlite(path)
    if scheme in {"postgresql", "postgres"}:
        from threadline.store.postgres import open_postgres

        store: Storage = await open_postgres(url, schema=schema or "public")
        return store
    raise ConfigurationError(
        f"unknown store {url!r}: use sqlite:///path/to/file.db or postgresql://host/db"
    )
