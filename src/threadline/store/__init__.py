"""Store backends: SQLite (embedded default) and PostgreSQL, chosen by URL.

Every persistence backend lives here: the event store (:func:`open_store`) and
the identity directory kept in the same database (:func:`open_directory`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from threadline.core.errors import ConfigurationError
from threadline.core.events import EventCodec
from threadline.core.ports import EventStore, KeyProvider, Storage

if TYPE_CHECKING:
    from threadline.identity.directory import IdentityDirectory


async def open_store(
    url: str, *, schema: str | None = None, keys: KeyProvider | None = None
) -> Storage:
    """Open the store that ``url`` names: ``sqlite:///path`` or ``postgresql://…``; with
    ``keys``, it encrypts personal data at rest (:mod:`threadline.store.sealing`)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from threadline.store.sqlite import open_sqlite

        # sqlite:///relative/file.db, sqlite:////absolute/file.db (as SQLAlchemy reads them)
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(f"{url!r} names no file: use sqlite:///var/threadline.db")
        return await open_sqlite(path, keys=keys)
    if scheme in {"postgresql", "postgres"}:
        from threadline.store.postgres import open_postgres

        store: Storage = await open_postgres(url, schema=schema or "public", keys=keys)
        return store
    raise ConfigurationError(
        f"unknown store {url!r}: use sqlite:///path/to/file.db or postgresql://host/db"
    )


async def open_directory(store: EventStore, codec: EventCodec | None = None) -> IdentityDirectory:
    """The identity directory kept in ``store``'s own database."""
    from threadline.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from threadline.store.sqlite_identity import SQLiteIdentityDirectory

        return SQLiteIdentityDirectory(store, codec)
    from threadline.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from threadline.store.postgres_identity import PostgresIdentityDirectory

        return PostgresIdentityDirectory(store, codec)
    raise TypeError(f"no identity directory for {type(store).__name__}")


def encrypt(store: EventStore, keys: KeyProvider) -> None:
    """Make ``store`` encrypt personal data with data keys wrapped by ``keys``, unless it
    does already (whoever opened it with keys chose them); ConfigurationError for a store
    that cannot."""
    from threadline.store.sealing import Encrypting

    if not isinstance(store, Encrypting):
        raise ConfigurationError(f"{type(store).__name__} cannot encrypt personal data")
    if store.sealer is None:
        store.use_keys(keys)
