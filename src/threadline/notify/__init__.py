"""Notifications: one-time codes to a customer by text message or e-mail.

:mod:`.port` is the port (:class:`Notifier`, :class:`Notifiers`,
:class:`NotifyFailure`); the transports are sibling modules, one per vendor:
:mod:`.twilio_sms`, :mod:`.smtp`, and :mod:`.log` for development.
:func:`notifiers_from` builds the ones the settings turn on.
"""

from __future__ import annotations

from typing import TypeVar

from threadline.core.errors import ConfigurationError
from threadline.notify.log import LogNotifier
from threadline.notify.port import Notifier, Notifiers, NotifyFailure, Via
from threadline.notify.smtp import SmtpNotifier
from threadline.notify.twilio_sms import TwilioSms
from threadline.settings import PREFIX, Settings

__all__ = [
    "LogNotifier",
    "Notifier",
    "Notifiers",
    "NotifyFailure",
    "SmtpNotifier",
    "TwilioSms",
    "Via",
    "notifiers_from",
]

T = TypeVar("T")


def _required(value: T | None, name: str) -> T:
    # Settings refuse these combinations at start-up; this guards hand-built settings.
    if value is None:
        raise ConfigurationError(f"{PREFIX}{name.upper()} is required by the notifier chosen")
    return value


def _sms(settings: Settings) -> Notifier | None:
    if settings.notify_sms == "log":
        return LogNotifier("sms")
    if settings.notify_sms == "twilio":
        return TwilioSms(
            _required(settings.twilio_account_sid, "twilio_account_sid"),
            _required(settings.twilio_auth_token, "twilio_auth_token").get_secret_value(),
            sender=_required(settings.sms_from, "sms_from"),
            base_url=settings.twilio_api_base,
        )
    return None


def _email(settings: Settings, sender_name: str) -> Notifier | None:
    if settings.notify_email == "log":
        return LogNotifier("email")
    if settings.notify_email == "smtp":
        password = settings.smtp_password
        return SmtpNotifier(
            _required(settings.smtp_host, "smtp_host"),
            sender=_required(settings.email_from, "email_from"),
            sender_name=sender_name,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
        )
    return None


def notifiers_from(settings: Settings, sender_name: str) -> Notifiers:
    """The notifiers ``settings`` turn on; e-mail is from ``sender_name`` (the business)."""
    return Notifiers(sms=_sms(settings), email=_email(settings, sender_name))
