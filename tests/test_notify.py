"""Notifiers: codes by e-mail through a real SMTP server (aiosmtpd), by SMS through a local
fake of Twilio's REST API, and to the log in development; and the settings that choose them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from tests.conftest import LiveServer
from tests.serving import free_port
from threadline.core.errors import ConfigurationError
from threadline.notify import (
    LogNotifier,
    Notifiers,
    NotifyFailure,
    SmtpNotifier,
    TwilioSms,
    notifiers_from,
)
from threadline.settings import Settings, load_settings

PHONE = "+447700900123"
EMAIL = "ada@example.com"
TEXT = "Your verification code is 482910"
KEY = "otp-01J9Z3Q4S8"
SENDER = "codes@shop.example"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token-5f1c2d"
TWILIO_NUMBER = "+14155550100"


# -- a real SMTP server ------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: bytes | None


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps each message; ``refused`` recipients get a 550."""

    received: list[Received] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login if session.auth_data else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"


def only_mail_user(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"s3cret")
    return AuthResult(success=ok, auth_data=auth_data)


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    """Starts an aiosmtpd server on a free loopback port with the options given."""
    controllers: list[Controller] = []

    def start(mailbox: Mailbox, **options: Any) -> int:
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return int(controller.port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context, a client's trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=cert_file)
    return server, client


async def test_an_email_carries_the_text_to_the_address_from_the_sender_with_the_key(
    smtp_server,
) -> None:
    mailbox = Mailbox()
    port = smtp_server(mailbox)
    notifier = SmtpNotifier("127.0.0.1", port=port, security="none", sender=SENDER)
    await notifier.send(EMAIL, TEXT, key=KEY, subject="Your code")
    (mail,) = mailbox.received
    assert (mail.sender, mail.recipients) == (SENDER, [EMAIL])
    message = mail.message
    assert (message["To"], message["From"], message["Subject"]) == (EMAIL, SENDER, "Your code")
    assert message.get_content().strip() == TEXT
    assert message["Message-ID"] == f"<{KEY}@shop.example>"


async def test_a_retry_with_the_same_key_carries_the_same_message_id(smtp_server) -> None:
    mailbox = Mailbox()
    notifier = SmtpNotifier("127.0.0.1", port=smtp_server(mailbox), security="none", sender=SENDER)
    for key in (KEY, KEY, "otp-other"):
        await notifier.send(EMAIL, TEXT, key=key)
    first, retry, other = (mail.message["Message-ID"] for mail in mailbox.received)
    assert first == retry != other


async def test_starttls_upgrades_the_connection_before_logging_in(smtp_server, tls) -> None:
    server_tls, client_tls = tls
    mailbox = Mailbox()
    port = smtp_server(
        mailbox,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=only_mail_user,
        auth_required=True,
        auth_require_tls=True,
    )
    notifier = SmtpNotifier(
        "127.0.0.1", port=port, sender=SENDER, username="mailer", password="s3cret",
        tls_context=client_tls,
    )  # fmt: skip
    await notifier.send(EMAIL, TEXT, key=KEY)
    (mail,) = mailbox.received
    assert mail.login == b"mailer"
    assert mail.message.get_content().strip() == TEXT


async def test_tls_security_speaks_tls_from_the_first_byte(smtp_server, tls) -> None:
    server_tls, client_tls = tls
    mailbox = Mailbox()
    port = smtp_server(mailbox, ssl_context=server_tls)
    notifier = SmtpNotifier(
        "127.0.0.1", port=port, security="tls", sender=SENDER, tls_context=client_tls
    )
    await notifier.send(EMAIL, TEXT, key=KEY)
    assert [mail.recipients for mail in mailbox.received] == [[EMAIL]]


async def test_an_untrusted_certificate_is_a_failure_a_retry_cannot_fix(smtp_server, tls) -> None:
    mailbox = Mailbox()
    port = smtp_server(mailbox, tls_context=tls[0], require_starttls=True)
    notifier = SmtpNotifier("127.0.0.1", port=port, sender=SENDER)  # trusts the system CAs
    with pytest.raises(NotifyFailure) as failure:
        await notifier.send(EMAIL, TEXT, key=KEY)
    assert "certificate verify failed" in str(failure.value) and not failure.value.retryable
    assert mailbox.received == []


async def test_a_refused_connection_is_a_retryable_failure() -> None:
    notifier = SmtpNotifier("127.0.0.1", port=free_port(), security="none", sender=SENDER)
    with pytest.raises(NotifyFailure) as failure:
        await notifier.send(EMAIL, TEXT, key=KEY)
    assert failure.value.retryable
    assert EMAIL not in str(failure.value) and TEXT not in str(failure.value)


async def test_a_refused_recipient_is_a_permanent_failure_that_does_not_name_them(
    smtp_server,
) -> None:
    mailbox = Mailbox(refused={EMAIL})
    notifier = SmtpNotifier("127.0.0.1", port=smtp_server(mailbox), security="none", sender=SENDER)
    with pytest.raises(NotifyFailure) as failure:
        await notifier.send(EMAIL, TEXT, key=KEY)
    assert "550" in str(failure.value) and not failure.value.retryable
    assert EMAIL not in str(failure.value) and TEXT not in str(failure.value)


# -- a local fake of Twilio's Messages API -----------------------------------------------


@dataclass
class Posted:
    path: str
    form: dict[str, str]
    authorization: str
    idempotency: str | None


@dataclass
class FakeMessages:
    """Twilio's ``Messages.json``: records each POST, answers 201 or ``answer``."""

    posted: list[Posted] = field(default_factory=list)
    answer: tuple[int, dict[str, Any] | None] | None = None
    base: str = ""

    def app(self) -> Starlette:
        async def create(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode()))
            self.posted.append(
                Posted(
                    request.url.path,
                    form,
                    request.headers.get("authorization", ""),
                    request.headers.get("i-twilio-idempotency-token"),
                )
            )
            if self.answer is not None:
                status, body = self.answer
                return JSONResponse(body, status_code=status)
            return JSONResponse({"sid": "SM" + "0" * 32, "status": "queued"}, status_code=201)

        path = "/2010-04-01/Accounts/{account}/Messages.json"
        return Starlette(routes=[Route(path, create, methods=["POST"])])


@pytest.fixture
async def twilio():
    fake = FakeMessages()
    async with LiveServer(fake.app()) as live:
        fake.base = live.http
        yield fake


def sms(base: str) -> TwilioSms:
    return TwilioSms(ACCOUNT_SID, AUTH_TOKEN, sender=TWILIO_NUMBER, base_url=base)


async def test_an_sms_posts_to_from_and_body_with_basic_auth_and_the_key(twilio) -> None:
    await sms(twilio.base).send(PHONE, TEXT, key=KEY)
    (posted,) = twilio.posted
    assert posted.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert posted.form == {"To": PHONE, "From": TWILIO_NUMBER, "Body": TEXT}
    assert posted.authorization == httpx.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)._auth_header
    assert posted.idempotency == KEY


async def test_a_refusal_names_twilios_error_code_but_not_the_number(twilio) -> None:
    message = f"The 'To' number {PHONE} is not a valid phone number."
    twilio.answer = (400, {"code": 21211, "message": message, "status": 400})
    with pytest.raises(NotifyFailure) as failure:
        await sms(twilio.base).send(PHONE, TEXT, key=KEY)
    assert "21211" in str(failure.value) and not failure.value.retryable
    assert PHONE not in str(failure.value) and TEXT not in str(failure.value)


async def test_a_server_error_at_twilio_is_retryable(twilio) -> None:
    twilio.answer = (503, None)
    with pytest.raises(NotifyFailure) as failure:
        await sms(twilio.base).send(PHONE, TEXT, key=KEY)
    assert failure.value.retryable and "503" in str(failure.value)


async def test_an_unreachable_twilio_is_a_retryable_failure() -> None:
    with pytest.raises(NotifyFailure) as failure:
        await sms(f"http://127.0.0.1:{free_port()}").send(PHONE, TEXT, key=KEY)
    assert failure.value.retryable


# -- the log, in development -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "to", "shown"),
    [("sms", PHONE, "+44*******123"), ("email", EMAIL, "a***@example.com")],
)
async def test_the_log_notifier_logs_the_text_with_the_destination_masked(kind, to, shown) -> None:
    with capture_logs() as logs:
        await LogNotifier(kind).send(to, TEXT, key=KEY)
    (entry,) = logs
    assert (entry["event"], entry["to"], entry["text"]) == ("notify.logged", shown, TEXT)
    assert to not in str(entry)


# -- settings ----------------------------------------------------------------------------


def test_notifiers_are_off_by_default() -> None:
    settings = load_settings({})
    assert (settings.notify_sms, settings.notify_email) == ("off", "off")
    assert notifiers_from(settings, "Shop") == Notifiers()


@pytest.mark.parametrize("setting", ["THREADLINE_NOTIFY_SMS", "THREADLINE_NOTIFY_EMAIL"])
def test_logging_codes_is_refused_in_production(setting) -> None:
    load_settings({setting: "log"})  # development
    with pytest.raises(ConfigurationError) as refused:
        load_settings({setting: "log", "THREADLINE_ENV": "production"})
    assert f"bad setting {setting}" in str(refused.value)
    assert "production" in str(refused.value)


def test_twilio_without_its_credentials_and_number_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"THREADLINE_NOTIFY_SMS": "twilio", "THREADLINE_SMS_FROM": TWILIO_NUMBER})
    message = str(refused.value)
    assert "THREADLINE_TWILIO_ACCOUNT_SID" in message
    assert "THREADLINE_TWILIO_AUTH_TOKEN" in message
    assert "THREADLINE_SMS_FROM" not in message


def test_smtp_without_a_host_or_a_sender_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"THREADLINE_NOTIFY_EMAIL": "smtp", "THREADLINE_EMAIL_FROM": SENDER})
    assert "needs THREADLINE_SMTP_HOST" in str(refused.value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"THREADLINE_NOTIFY_EMAIL": "smtp", "THREADLINE_SMTP_HOST": "mail"})
    assert "needs THREADLINE_EMAIL_FROM" in str(refused.value)


def test_the_settings_choose_a_notifier_for_each_way_a_code_goes() -> None:
    settings = Settings(
        notify_sms="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        sms_from=TWILIO_NUMBER,
        notify_email="log",
    )
    notifiers = notifiers_from(settings, "Shop")
    assert isinstance(notifiers.for_via("phone"), TwilioSms)
    assert isinstance(notifiers.for_via("email"), LogNotifier)


async def test_email_from_settings_shows_the_sender_name(smtp_server) -> None:
    mailbox = Mailbox()
    settings = Settings(
        notify_email="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server(mailbox),
        smtp_security="none",
        email_from=SENDER,
    )
    email = notifiers_from(settings, "Corner Shop").email
    assert email is not None
    await email.send(EMAIL, TEXT, key=KEY)
    (mail,) = mailbox.received
    assert parseaddr(mail.message["From"]) == ("Corner Shop", SENDER)
