"""Cloud tenants' credentials (used only by the cloud engine and its webhook), as a part
of the SQL store."""

from __future__ import annotations

import time

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.errors import Conflict
from zapmux.store import schema as t
from zapmux.store.records import CloudAccount
from zapmux.store.rows import record as _record
from zapmux.store.rows import values as _values


class CloudTables:
    """Mixed into ``SqlStore``; ``engine`` is its SQLAlchemy engine."""

    engine: AsyncEngine

    async def cloud_save(self, account: CloudAccount) -> None:
        a = t.cloud_accounts
        account.created_at = account.created_at or time.time()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(delete(a).where(a.c.tenant_id == account.tenant_id))
                await conn.execute(insert(a).values(_values(account, skip=())))
        except IntegrityError as exc:
            raise Conflict(
                f"phone number id {account.phone_number_id} already belongs to another tenant",
                code="phone_number_id_in_use",
            ) from exc

    async def cloud_account(self, tenant_id: str) -> CloudAccount | None:
        a = t.cloud_accounts
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(a).where(a.c.tenant_id == tenant_id))).first()
        return _record(CloudAccount, row) if row else None

    async def cloud_account_for_number(self, phone_number_id: str) -> CloudAccount | None:
        a = t.cloud_accounts
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(a).where(a.c.phone_number_id == phone_number_id))
            ).first()
        return _record(CloudAccount, row) if row else None

    async def cloud_verify_tokens(self) -> list[str]:
        a = t.cloud_accounts
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(a.c.verify_token))).scalars())

    async def cloud_forget(self, tenant_id: str) -> None:
        a = t.cloud_accounts
        async with self.engine.begin() as conn:
            await conn.execute(delete(a).where(a.c.tenant_id == tenant_id))
