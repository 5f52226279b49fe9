"""Cloud tenants' credentials (used only by the cloud engine and its webhook), as a part
of the SQL store."""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from zapmux.errors import Conflict
from zapmux.store import schema as t
from zapmux.store.records import CloudAccount
from zapmux.store.rows import values as _values
from zapmux.store.sql_base import SqlTables


class CloudTables(SqlTables):
    """Mixed into ``SqlStore``; writes go through its writer like every other."""

    async def cloud_save(self, account: CloudAccount) -> None:
        account.created_at = account.created_at or time.time()
        key = {"tenant_id": account.tenant_id}
        try:
            await self._replace(t.cloud_accounts, key, _values(account, skip=()))
        except IntegrityError as exc:
            raise Conflict(
                f"phone number id {account.phone_number_id} already belongs to another tenant",
                code="phone_number_id_in_use",
            ) from exc

    async def cloud_account(self, tenant_id: str) -> CloudAccount | None:
        return await self._find(CloudAccount, t.cloud_accounts, tenant_id=tenant_id)

    async def cloud_account_for_number(self, phone_number_id: str) -> CloudAccount | None:
        accounts = t.cloud_accounts
        return await self._find(CloudAccount, accounts, phone_number_id=phone_number_id)

    async def cloud_verify_tokens(self) -> list[str]:
        a = t.cloud_accounts
        return [row.verify_token for row in await self._all(select(a.c.verify_token))]

    async def cloud_forget(self, tenant_id: str) -> None:
        a = t.cloud_accounts
        await self._execute(delete(a).where(a.c.tenant_id == tenant_id))
