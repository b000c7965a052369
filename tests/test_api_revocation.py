"""A token revoked while the service runs is refused from then on, wherever it was revoked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from tests.conftest import TOKEN_SECRET
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.security import revoke
from threadline.settings import Settings


async def test_a_token_revoked_by_another_process_is_refused_at_once(any_store) -> None:
    app = create_app(Settings(token_secret=TOKEN_SECRET), store=any_store)
    async with app.router.lifespan_context(app):
        issued = service_of(app).tokens.issue("agent-ana", ["agent"], timedelta(hours=1),
                                        {"queues": ["orders"]})  # fmt: skip
        headers = {"Authorization": f"Bearer {issued.token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/agents/me", headers=headers)).status_code == 200
            # As `threadline token revoke` does: straight into the log, not through this app.
            assert issued.principal.expires_at is not None
            await revoke(any_store, issued.principal.token_id, reason="lost laptop",
                         revoked_by="sup-sam", expires_at=issued.principal.expires_at)  # fmt: skip
            service_of(app).relay.poke()  # the relay would find it at its next poll anyway
            async with asyncio.timeout(5):
                while (
                    response := await client.get("/agents/me", headers=headers)
                ).status_code == 200:
                    await asyncio.sleep(0.02)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:threadline:problem:token-revoked"
