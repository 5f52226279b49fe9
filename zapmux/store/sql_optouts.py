"""Opt-outs (numbers that asked a tenant to stop writing), as a part of the SQL store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, delete, select

from zapmux.store import schema as t
from zapmux.store.base import OPT_OUT_CHANGES
from zapmux.store.guard import in_life
from zapmux.store.records import OptOut
from zapmux.store.rows import values as _values
from zapmux.store.sql_base import SqlTables, replace


class OptOutTables(SqlTables):
    """Mixed into ``SqlStore``; writes go through its writer like every other."""

    async def add_opt_out(self, opt_out: OptOut, incarnation: str | None = None) -> None:
        """Record (or record again) that a number opted out."""
        key = {"tenant_id": opt_out.tenant_id, "phone": opt_out.phone}
        row = _values(opt_out, skip=())

        def job(conn: Connection) -> None:
            with in_life(conn, opt_out.tenant_id, incarnation):
                replace(conn, t.opt_outs, key, row)
                self._notify(conn, OPT_OUT_CHANGES, opt_out.tenant_id)

        await self._write(job)

    async def find_opt_out(self, tenant_id: str, phones: Sequence[str]) -> OptOut | None:
        """The opt-out of any of these spellings of one number, if there is one."""
        o = t.opt_outs.c
        stmt = select(t.opt_outs).where(and_(o.tenant_id == tenant_id, o.phone.in_(list(phones))))
        return await self._record_of(OptOut, stmt.limit(1))

    async def opted_out_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        o = t.opt_outs.c
        stmt = select(o.tenant_id, o.phone).where(
            and_(o.tenant_id.in_({p[0] for p in pairs}), o.phone.in_({p[1] for p in pairs}))
        )
        found = {(r.tenant_id, r.phone) for r in await self._all(stmt)}
        return found & set(pairs)

    async def list_opt_outs(self, tenant_id: str) -> list[OptOut]:
        o = t.opt_outs.c
        stmt = select(t.opt_outs).where(o.tenant_id == tenant_id).order_by(o.created_at, o.phone)
        return await self._records(OptOut, stmt)

    async def remove_opt_out(self, tenant_id: str, phones: Sequence[str]) -> int:
        """Lift the opt-out of a number (any of its spellings); how many were removed."""
        o = t.opt_outs.c
        stmt = delete(t.opt_outs).where(and_(o.tenant_id == tenant_id, o.phone.in_(list(phones))))

        def job(conn: Connection) -> int:
            removed = int(conn.execute(stmt).rowcount or 0)
            if removed:
                self._notify(conn, OPT_OUT_CHANGES, tenant_id)
            return removed

        return await self._write(job)
