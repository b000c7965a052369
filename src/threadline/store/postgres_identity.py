"""The identity directory (:class:`~threadline.identity.IdentityDirectory`) in the
PostgreSQL store's schema.

It shares the store's connection pool (:meth:`PostgresStore.connection`, whose
``search_path`` is the store's schema). :meth:`PostgresIdentityDirectory.apply`
locks the checkpoint row first, so processes folding the same log take turns
and none folds twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, Final

from psycopg import AsyncConnection

from threadline.core.events import Event, EventCodec, EventRecord
from threadline.identity.directory import MAX_HOPS, IdentityDirectory, decode_relevant
from threadline.identity.fold import Conflict, Link, Merge, Working, fold, key_of, needs
from threadline.identity.identifiers import Identifier
from threadline.store.directory_seal import DirectoryCipher, directory_cipher
from threadline.store.postgres import PostgresStore

NAME: Final = "identity"
#: The checkpoint row that says the rows are sealed (the directory was rebuilt so).
SEALED_ROWS: Final = "identity.sealed"
_LINK: Final = "identifier, kind, value, customer_id, verified, method, linked_by, position"
_CONFLICT: Final = (
    "conflict_id, identifier, claimed_for, held_by, verified, method, linked_by, reason,"
    " status, position, resolved_by"
)
_CHAIN: Final = (
    'WITH RECURSIVE chain(c, hops) AS (SELECT %s::text COLLATE "C", 0 UNION SELECT m.into_customer,'
    " chain.hops + 1 FROM identity_merges m JOIN chain ON m.customer_id = chain.c"
    f" WHERE chain.hops < {MAX_HOPS}) SELECT c FROM chain ORDER BY hops DESC LIMIT 1"
)
_CLOSURE: Final = (
    'WITH RECURSIVE chain(c) AS (SELECT unnest(%s::text[]) COLLATE "C" UNION'
    " SELECT m.into_customer FROM identity_merges m JOIN chain ON m.customer_id = chain.c)"
    " SELECT m.customer_id, m.into_customer, m.merge_id FROM identity_merges m"
    " JOIN chain ON m.customer_id = chain.c"
)


def _link(row: Sequence[Any], cipher: DirectoryCipher) -> Link:
    index, kind, stored, customer, verified, method, by, position = row[:8]
    value = cipher.open(stored, index)
    return Link(key_of(kind, value), kind, value, customer, verified, method, by, position)


def _conflict(row: Sequence[Any], cipher: DirectoryCipher) -> Conflict:
    cid, key, claimed, held, verified, method, by, reason, status, position, resolved = row[:11]
    return Conflict(cid, cipher.open(key, cid), claimed, held, verified, method, by,
                    cipher.open(reason, cid), status, position, resolved)  # fmt: skip


async def _all(conn: AsyncConnection[Any], sql: str, params: tuple[Any, ...]) -> list[Any]:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchall()


async def _load(
    conn: AsyncConnection[Any], events: list[Event], cipher: DirectoryCipher
) -> Working:
    need = needs(events)
    w = Working()
    for row in await _all(conn, f"SELECT {_CONFLICT} FROM identity_conflicts"
                          " WHERE conflict_id = ANY(%s)", (sorted(need.conflicts),)):  # fmt: skip
        w.conflicts[row[0]] = _conflict(row, cipher)
    keys = set(need.keys) | {c.key for c in w.conflicts.values() if c is not None}
    for key in keys:
        w.links[key] = None
    indexes = {cipher.index(key): key for key in keys}
    for row in await _all(conn, f"SELECT {_LINK} FROM identity_links WHERE identifier = ANY(%s)",
                          (sorted(indexes),)):  # fmt: skip
        w.links[indexes[row[0]]] = _link(row, cipher)
    customers = set(need.customers)
    customers.update(link.customer_id for link in w.links.values() if link is not None)
    for c in w.conflicts.values():
        if c is not None:
            customers.update((c.claimed_for, c.held_by))
    for absorbed, into, merge_id in await _all(conn, _CLOSURE, (sorted(customers),)):
        w.merges[absorbed] = Merge(absorbed, into, merge_id)
    return w


async def _save(
    conn: AsyncConnection[Any], w: Working, position: int, cipher: DirectoryCipher
) -> None:
    upserts = [w.links[k] for k in sorted(w.changed_links) if w.links[k] is not None]
    deletes = sorted(cipher.index(k) for k in w.changed_links if w.links[k] is None)
    async with conn.cursor() as cur:
        if deletes:
            await cur.execute("DELETE FROM identity_links WHERE identifier = ANY(%s)", (deletes,))
        if upserts:
            await cur.executemany(
                f"INSERT INTO identity_links ({_LINK}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (identifier) DO UPDATE SET customer_id = excluded.customer_id,"
                " verified = excluded.verified, method = excluded.method,"
                " linked_by = excluded.linked_by, position = excluded.position",
                [(index, x.kind, cipher.seal(x.value, index), x.customer_id, x.verified,
                  x.method, x.linked_by, x.position)
                 for x in upserts if x is not None for index in (cipher.index(x.key),)],
            )  # fmt: skip
        for customer in sorted(w.changed_merges):
            merge = w.merges[customer]
            await cur.execute("DELETE FROM identity_merges WHERE customer_id = %s", (customer,))
            if merge is not None:
                await cur.execute("INSERT INTO identity_merges VALUES (%s, %s, %s)",
                                  (customer, merge.into_customer, merge.merge_id))  # fmt: skip
        for conflict_id in sorted(w.changed_conflicts):
            c = w.conflicts[conflict_id]
            assert c is not None
            await cur.execute(
                f"INSERT INTO identity_conflicts ({_CONFLICT}) VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (conflict_id) DO UPDATE SET"
                " status = excluded.status, resolved_by = excluded.resolved_by",
                (c.conflict_id, cipher.seal(c.key, c.conflict_id), c.claimed_for, c.held_by,
                 c.verified, c.method, c.linked_by, cipher.seal(c.reason, c.conflict_id),
                 c.status, c.position, c.resolved_by),
            )  # fmt: skip
        await cur.execute(
            "UPDATE identity_checkpoint SET position = %s WHERE name = %s", (position, NAME)
        )


async def _drop(conn: AsyncConnection[Any]) -> None:
    """Every row of the directory, its checkpoint too (how its rows are kept stays)."""
    await conn.execute("TRUNCATE identity_links, identity_merges, identity_conflicts")
    await conn.execute("DELETE FROM identity_checkpoint WHERE name <> %s", (SEALED_ROWS,))


class PostgresIdentityDirectory(IdentityDirectory):
    """Identity tables in the store's schema (migration 0002)."""

    def __init__(self, store: PostgresStore, codec: EventCodec | None = None) -> None:
        self._store = store
        self._codec = codec or EventCodec()
        self._cipher: DirectoryCipher | None = None

    async def _ready(self) -> DirectoryCipher:
        """How rows are stored; the first time the store encrypts, rows kept in clear
        before are dropped and the directory is rebuilt from the log, sealed."""
        if self._cipher is None:
            cipher = await directory_cipher(self._store)
            if cipher.sealed:
                async with self._store.connection() as conn, conn.transaction():
                    await conn.execute("LOCK TABLE identity_checkpoint IN EXCLUSIVE MODE")
                    marked = await _all(conn, "SELECT 1 FROM identity_checkpoint WHERE name = %s",
                                        (SEALED_ROWS,))  # fmt: skip
                    if not marked:
                        await _drop(conn)
                        await conn.execute("INSERT INTO identity_checkpoint VALUES (%s, 1)",
                                           (SEALED_ROWS,))  # fmt: skip
            self._cipher = cipher
        return self._cipher

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self._store.connection() as conn:
            return await _all(conn, sql, params)

    async def lookup(self, identifier: Identifier) -> Link | None:
        cipher = await self._ready()
        rows = await self._rows(
            f"SELECT {_LINK}, m.into_customer FROM identity_links"
            " LEFT JOIN identity_merges m USING (customer_id) WHERE identifier = %s",
            (cipher.index(identifier.key),),
        )
        if not rows:
            return None
        link = _link(rows[0], cipher)
        if rows[0][8] is None:
            return link
        return replace(link, customer_id=await self.survivor(link.customer_id))

    async def identifiers(self, customer_id: str) -> list[Link]:
        cipher = await self._ready()
        rows = await self._rows(f"SELECT {_LINK} FROM identity_links WHERE customer_id = %s",
                                (customer_id,))  # fmt: skip
        return sorted((_link(row, cipher) for row in rows), key=lambda link: link.key)

    async def survivor(self, customer_id: str) -> str:
        rows = await self._rows(_CHAIN, (customer_id,))
        return str(rows[0][0])

    async def merge_of(self, customer_id: str) -> Merge | None:
        rows = await self._rows(
            "SELECT into_customer, merge_id FROM identity_merges WHERE customer_id = %s",
            (customer_id,),
        )
        return Merge(customer_id, rows[0][0], rows[0][1]) if rows else None

    async def conflicts(self, status: str | None = "open") -> list[Conflict]:
        cipher = await self._ready()
        rows = await self._rows(
            f"SELECT {_CONFLICT} FROM identity_conflicts"
            " WHERE (%s::text IS NULL OR status = %s) ORDER BY position",
            (status, status),
        )
        return [_conflict(row, cipher) for row in rows]

    async def conflict(self, conflict_id: str) -> Conflict | None:
        cipher = await self._ready()
        rows = await self._rows(
            f"SELECT {_CONFLICT} FROM identity_conflicts WHERE conflict_id = %s", (conflict_id,)
        )
        return _conflict(rows[0], cipher) if rows else None

    async def checkpoint(self) -> int:
        await self._ready()
        rows = await self._rows("SELECT position FROM identity_checkpoint WHERE name = %s", (NAME,))
        return int(rows[0][0]) if rows else 0

    async def apply(self, records: Sequence[EventRecord]) -> int:
        if not records:
            return await self.checkpoint()
        last = records[-1].position
        cipher = await self._ready()
        candidates = decode_relevant(self._codec, records, 0)
        async with self._store.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO identity_checkpoint VALUES (%s, 0) ON CONFLICT DO NOTHING", (NAME,)
            )
            (after,) = (await _all(conn, "SELECT position FROM identity_checkpoint"
                                   " WHERE name = %s FOR UPDATE", (NAME,)))[0]  # fmt: skip
            if last <= after:
                return int(after)
            events = [e for e in candidates if e.position > after]
            working = await _load(conn, events, cipher)
            fold(working, events)
            await _save(conn, working, last, cipher)
        return last

    async def clear(self) -> None:
        await self._ready()
        async with self._store.connection() as conn, conn.transaction():
            await _drop(conn)

    async def absorbed(self, customer_id: str) -> list[str]:
        rows = await self._rows(
            "WITH RECURSIVE absorbed(c) AS (SELECT customer_id FROM identity_merges"
            " WHERE into_customer = %s UNION SELECT m.customer_id FROM identity_merges m"
            " JOIN absorbed a ON m.into_customer = a.c) SELECT c FROM absorbed ORDER BY c",
            (customer_id,),
        )
        return [str(row[0]) for row in rows]

    async def forget(self, customer_ids: Collection[str]) -> int:
        ids = sorted(customer_ids)
        deleted = 0
        async with self._store.connection() as conn, conn.transaction():
            for sql, params in (
                ("DELETE FROM identity_links WHERE customer_id = ANY(%s)", (ids,)),
                ("DELETE FROM identity_merges WHERE customer_id = ANY(%s)"
                 " OR into_customer = ANY(%s)", (ids, ids)),
                ("DELETE FROM identity_conflicts WHERE claimed_for = ANY(%s)"
                 " OR held_by = ANY(%s)", (ids, ids)),
            ):  # fmt: skip
                deleted += (await conn.execute(sql, params)).rowcount
        return deleted
