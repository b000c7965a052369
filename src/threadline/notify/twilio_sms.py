"""Text messages through Twilio's Programmable Messaging REST API, over httpx.

One POST to ``Messages.json`` per send, with the account's basic auth and the
key in ``I-Twilio-Idempotency-Token`` so a retried request can be recognised as
the same send. The REST base URL is configurable so tests can serve a local fake.
"""

from __future__ import annotations

from typing import Final

import httpx

from threadline.notify.port import NotifyFailure

API_BASE: Final = "https://api.twilio.com"
IDEMPOTENCY_HEADER: Final = "I-Twilio-Idempotency-Token"
TIMEOUT: Final = 10.0


def _error_code(response: httpx.Response) -> int | None:
    """Twilio's error code (21211…); never its message, which can quote the number."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


class TwilioSms:
    """Sends each text as an SMS from ``sender`` (a Twilio number or sender ID)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        sender: str,
        base_url: str = API_BASE,
        timeout: float = TIMEOUT,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.sender = sender
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.timeout = timeout

    async def send(self, to: str, text: str, *, key: str, subject: str | None = None) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(
                    self.url,
                    data={"To": to, "From": self.sender, "Body": text},
                    auth=(self.account_sid, self._auth_token),
                    headers={IDEMPOTENCY_HEADER: key},
                )
        except httpx.HTTPError as exc:
            raise NotifyFailure(
                f"Twilio is unreachable: {type(exc).__name__}", retryable=True
            ) from None
        if response.is_success:
            return
        code = _error_code(response)
        detail = f" (Twilio error {code})" if code is not None else ""
        raise NotifyFailure(
            f"Twilio refused the message: HTTP {response.status_code}{detail}",
            retryable=response.status_code == 429 or response.status_code >= 500,
        )
