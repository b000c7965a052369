"""E-mail through an SMTP server, with the standard library's :mod:`smtplib`.

``smtplib`` blocks, so each send runs in a worker thread. SMTP has no
idempotency of its own: the key becomes the Message-ID's local part, so a
duplicate that a retry lets through carries the same Message-ID as the first
and mail systems (and people reading headers) can tell them apart.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Final, Literal
from urllib.parse import quote

from threadline.notify.port import NotifyFailure

#: none: plain text (a local relay only); starttls: upgrade on connect (587); tls: TLS from
#: the first byte (465).
Security = Literal["none", "starttls", "tls"]
TIMEOUT: Final = 10.0


def message_id(key: str, domain: str) -> str:
    """``<key@domain>``, the key percent-encoded so any key makes a valid, distinct id."""
    return f"<{quote(key, safe='').replace('.', '%2E')}@{domain}>"


class SmtpNotifier:
    """Sends each text as a plain-text e-mail from ``sender`` (shown as ``sender_name``)."""

    def __init__(
        self,
        host: str,
        *,
        sender: str,
        sender_name: str = "",
        port: int = 587,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security: Security = security
        self.sender = Address(display_name=sender_name, addr_spec=sender)
        self.username = username
        self._password = password
        self.timeout = timeout
        self._tls = tls_context or ssl.create_default_context()

    def compose(self, to: str, text: str, *, key: str, subject: str | None) -> EmailMessage:
        """The e-mail for one send."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        if subject is not None:
            message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id(key, self.sender.domain)
        message.set_content(text)
        return message

    async def send(self, to: str, text: str, *, key: str, subject: str | None = None) -> None:
        message = self.compose(to, text, key=key, subject=subject)
        try:
            await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPResponseException as exc:
            raise self._refused(exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            # Its text echoes the recipient; only the reply code is kept.
            code = next(iter(exc.recipients.values()))[0]
            raise self._refused(code) from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            # The server lacks STARTTLS or AUTH, or its certificate is not trusted: only a
            # change of settings helps. Neither message names the recipient.
            raise NotifyFailure(
                f"SMTP server {self.host}:{self.port} cannot be used: {exc}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyFailure(
                f"SMTP server {self.host}:{self.port} failed: {type(exc).__name__}",
                retryable=True,
            ) from None

    def _refused(self, code: int) -> NotifyFailure:
        # 4xx replies are transient (RFC 5321 §4.2.1); 5xx are permanent.
        return NotifyFailure(
            f"SMTP server {self.host}:{self.port} refused the message: {code}",
            retryable=400 <= code < 500,
        )

    def _deliver(self, message: EmailMessage) -> None:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=self._tls)
            if self.username is not None:
                smtp.login(self.username, self._password or "")
            smtp.send_message(message)
