"""The identity directory (:class:`~threadline.identity.IdentityDirectory`) in the
SQLite store's own file.

Writes run as work on the store's writer thread (:meth:`SQLiteStore.transact`:
one transaction with the store's group commit: load, fold, write rows and
checkpoint); reads run on the store's reader threads. Nothing blocks the event
loop, and a bug in the fold undoes its own writes without stopping the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

import orjson

from threadline.core.events import Event, EventCodec, EventRecord
from threadline.identity.directory import MAX_HOPS, IdentityDirectory, decode_relevant
from threadline.identity.fold import Conflict, Link, Merge, Working, fold, key_of, needs
from threadline.identity.identifiers import Identifier
from threadline.store.directory_seal import DirectoryCipher, directory_cipher
from threadline.store.sqlite import SQLiteStore

NAME: Final = "identity"
#: The checkpoint row that says the rows are sealed (the directory was rebuilt so).
SEALED_ROWS: Final = "identity.sealed"
_LINK: Final = "identifier, kind, value, customer_id, verified, method, linked_by, position"
_CONFLICT: Final = (
    "conflict_id, identifier, claimed_for, held_by, verified, method, linked_by, reason,"
    " status, position, resolved_by"
)
_CHAIN: Final = (
    "WITH RECURSIVE chain(c, hops) AS (SELECT ?, 0 UNION SELECT m.into_customer, hops + 1"
    f" FROM identity_merges m JOIN chain ON m.customer_id = chain.c WHERE hops < {MAX_HOPS})"
    " SELECT c FROM chain ORDER BY hops DESC LIMIT 1"
)
_CLOSURE: Final = (
    "WITH RECURSIVE chain(c) AS (SELECT value FROM json_each(?) UNION"
    " SELECT m.into_customer FROM identity_merges m JOIN chain ON m.customer_id = chain.c)"
    " SELECT m.customer_id, m.into_customer, m.merge_id FROM identity_merges m"
    " JOIN chain ON m.customer_id = chain.c"
)


def _link(row: Sequence[Any], cipher: DirectoryCipher) -> Link:
    index, kind, stored, customer, verified, method, by, position = row
    value = cipher.open(stored, index)
    return Link(key_of(kind, value), kind, value, customer, bool(verified), method, by, position)


def _conflict(row: Sequence[Any], cipher: DirectoryCipher) -> Conflict:
    cid, key, claimed, held, verified, method, by, reason, status, position, resolved = row
    return Conflict(cid, cipher.open(key, cid), claimed, held, bool(verified), method, by,
                    cipher.open(reason, cid), status, position, resolved)  # fmt: skip


def _json(items: Iterable[str]) -> str:
    return orjson.dumps(sorted(items)).decode()


def _load(conn: sqlite3.Connection, events: list[Event], cipher: DirectoryCipher) -> Working:
    need = needs(events)
    w = Working()
    for row in conn.execute(
        f"SELECT {_CONFLICT} FROM identity_conflicts WHERE conflict_id IN"
        " (SELECT value FROM json_each(?))",
        (_json(need.conflicts),),
    ):
        w.conflicts[row[0]] = _conflict(row, cipher)
    keys = set(need.keys) | {c.key for c in w.conflicts.values() if c is not None}
    for key in keys:
        w.links[key] = None
    indexes = {cipher.index(key): key for key in keys}
    for row in conn.execute(
        f"SELECT {_LINK} FROM identity_links WHERE identifier IN (SELECT value FROM json_each(?))",
        (_json(indexes),),
    ):
        w.links[indexes[row[0]]] = _link(row, cipher)
    customers = set(need.customers)
    customers.update(link.customer_id for link in w.links.values() if link is not None)
    for c in w.conflicts.values():
        if c is not None:
            customers.update((c.claimed_for, c.held_by))
    for absorbed, into, merge_id in conn.execute(_CLOSURE, (_json(customers),)):
        w.merges[absorbed] = Merge(absorbed, into, merge_id)
    return w


def _save(conn: sqlite3.Connection, w: Working, position: int, cipher: DirectoryCipher) -> None:
    for key in w.changed_links:
        link = w.links[key]
        index = cipher.index(key)
        if link is None:
            conn.execute("DELETE FROM identity_links WHERE identifier = ?", (index,))
        else:
            conn.execute(
                f"INSERT OR REPLACE INTO identity_links ({_LINK}) VALUES (?,?,?,?,?,?,?,?)",
                (index, link.kind, cipher.seal(link.value, index), link.customer_id,
                 int(link.verified), link.method, link.linked_by, link.position),
            )  # fmt: skip
    for customer in w.changed_merges:
        merge = w.merges[customer]
        if merge is None:
            conn.execute("DELETE FROM identity_merges WHERE customer_id = ?", (customer,))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO identity_merges VALUES (?, ?, ?)",
                (customer, merge.into_customer, merge.merge_id),
            )
    for conflict_id in w.changed_conflicts:
        c = w.conflicts[conflict_id]
        assert c is not None
        conn.execute(
            f"INSERT OR REPLACE INTO identity_conflicts ({_CONFLICT})"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (c.conflict_id, cipher.seal(c.key, c.conflict_id), c.claimed_for, c.held_by,
             int(c.verified), c.method, c.linked_by, cipher.seal(c.reason, c.conflict_id),
             c.status, c.position, c.resolved_by),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO identity_checkpoint VALUES (?, ?) ON CONFLICT (name)"
        " DO UPDATE SET position = excluded.position WHERE excluded.position > position",
        (NAME, position),
    )


def _drop(conn: sqlite3.Connection) -> None:
    """Every row of the directory, its checkpoint too (how its rows are kept stays)."""
    for table in ("identity_links", "identity_merges", "identity_conflicts"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DELETE FROM identity_checkpoint WHERE name <> ?", (SEALED_ROWS,))


class SQLiteIdentityDirectory(IdentityDirectory):
    """Identity tables beside the log in one SQLite file (migration 0002)."""

    def __init__(self, store: SQLiteStore, codec: EventCodec | None = None) -> None:
        self._store = store
        self._codec = codec or EventCodec()
        self._cipher: DirectoryCipher | None = None

    async def _ready(self) -> DirectoryCipher:
        """How rows are stored; the first time the store encrypts, rows kept in clear
        before are dropped and the directory is rebuilt from the log, sealed."""
        if self._cipher is None:
            cipher = await directory_cipher(self._store)
            if cipher.sealed:

                def adopt(conn: sqlite3.Connection, now: str) -> None:
                    marked = conn.execute("SELECT 1 FROM identity_checkpoint WHERE name = ?",
                                          (SEALED_ROWS,)).fetchone()  # fmt: skip
                    if marked is None:
                        _drop(conn)
                        conn.execute("INSERT INTO identity_checkpoint VALUES (?, 1)",
                                     (SEALED_ROWS,))  # fmt: skip

                await self._store.transact(adopt)
            self._cipher = cipher
        return self._cipher

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # The store's reader threads, so look-ups share its connections and never block.
        return await self._store._read(sql, params)

    async def lookup(self, identifier: Identifier) -> Link | None:
        cipher = await self._ready()
        rows = await self._rows(
            f"SELECT {_LINK}, m.into_customer FROM identity_links"
            " LEFT JOIN identity_merges m USING (customer_id) WHERE identifier = ?",
            (cipher.index(identifier.key),),
        )
        if not rows:
            return None
        link = _link(rows[0][:8], cipher)
        if rows[0][8] is None:
            return link
        return replace(link, customer_id=await self.survivor(link.customer_id))

    async def identifiers(self, customer_id: str) -> list[Link]:
        cipher = await self._ready()
        rows = await self._rows(f"SELECT {_LINK} FROM identity_links WHERE customer_id = ?",
                                (customer_id,))  # fmt: skip
        return sorted((_link(row, cipher) for row in rows), key=lambda link: link.key)

    async def survivor(self, customer_id: str) -> str:
        rows = await self._rows(_CHAIN, (customer_id,))
        return str(rows[0][0])

    async def merge_of(self, customer_id: str) -> Merge | None:
        rows = await self._rows(
            "SELECT into_customer, merge_id FROM identity_merges WHERE customer_id = ?",
            (customer_id,),
        )
        return Merge(customer_id, rows[0][0], rows[0][1]) if rows else None

    async def conflicts(self, status: str | None = "open") -> list[Conflict]:
        cipher = await self._ready()
        if status is None:
            rows = await self._rows(f"SELECT {_CONFLICT} FROM identity_conflicts"
                                    " ORDER BY position", ())  # fmt: skip
        else:
            rows = await self._rows(
                f"SELECT {_CONFLICT} FROM identity_conflicts WHERE status = ? ORDER BY position",
                (status,),
            )
        return [_conflict(row, cipher) for row in rows]

    async def conflict(self, conflict_id: str) -> Conflict | None:
        cipher = await self._ready()
        rows = await self._rows(
            f"SELECT {_CONFLICT} FROM identity_conflicts WHERE conflict_id = ?", (conflict_id,)
        )
        return _conflict(rows[0], cipher) if rows else None

    async def checkpoint(self) -> int:
        await self._ready()
        rows = await self._rows("SELECT position FROM identity_checkpoint WHERE name = ?", (NAME,))
        return int(rows[0][0]) if rows else 0

    async def apply(self, records: Sequence[EventRecord]) -> int:
        if not records:
            return await self.checkpoint()
        last = records[-1].position
        cipher = await self._ready()
        # Decoded on the loop (cheap); folded inside the writer's transaction.
        candidates = decode_relevant(self._codec, records, 0)

        def work(conn: sqlite3.Connection, now: str) -> int:
            row = conn.execute(
                "SELECT position FROM identity_checkpoint WHERE name = ?", (NAME,)
            ).fetchone()
            after = int(row[0]) if row else 0
            if last <= after:
                return after
            events = [e for e in candidates if e.position > after]
            working = _load(conn, events, cipher)
            fold(working, events)
            _save(conn, working, last, cipher)
            return last

        return int(await self._store.transact(work))

    async def clear(self) -> None:
        await self._ready()
        await self._store.transact(lambda conn, now: _drop(conn))

    async def absorbed(self, customer_id: str) -> list[str]:
        rows = await self._rows(
            "WITH RECURSIVE absorbed(c) AS (SELECT customer_id FROM identity_merges"
            " WHERE into_customer = ? UNION SELECT m.customer_id FROM identity_merges m"
            " JOIN absorbed a ON m.into_customer = a.c) SELECT c FROM absorbed ORDER BY c",
            (customer_id,),
        )
        return [str(row[0]) for row in rows]

    async def forget(self, customer_ids: Collection[str]) -> int:
        ids = _json(customer_ids)

        def work(conn: sqlite3.Connection, now: str) -> int:
            # The writer runs with secure_delete on: the deleted rows are zeroed in the file.
            within = "IN (SELECT value FROM json_each(?))"
            return sum(
                conn.execute(sql, params).rowcount
                for sql, params in (
                    (f"DELETE FROM identity_links WHERE customer_id {within}", (ids,)),
                    (f"DELETE FROM identity_merges WHERE customer_id {within}"
                     f" OR into_customer {within}", (ids, ids)),
                    (f"DELETE FROM identity_conflicts WHERE claimed_for {within}"
                     f" OR held_by {within}", (ids, ids)),
                )
            )  # fmt: skip

        return int(await self._store.transact(work))
