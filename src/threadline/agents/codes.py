"""One-time codes in a conversation: offered, answered, and the ``verify`` flow.

The agent asks the service to send a code (``action.requested`` of
:data:`~threadline.identity.codes.SEND_CODE`) to the phone or email on the
customer's record; the service sends it and records the challenge with a keyed
digest of the code (``verification.challenged``). A later message holding that
many digits is the answer: right, and this contact has proven possession
(``identity.linked``, method ``otp``); wrong, expired or out of tries, and it is
``verification.rejected``. The service limits codes per conversation and per
customer; the challenge limits tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from threadline.agents.actions import request_action
from threadline.agents.proofs import prove
from threadline.agents.step import Step
from threadline.identity.codes import SEND_CODE, CodeKey, told
from threadline.security.keys import TokenKey
from threadline.settings import Settings

#: The order in which a customer's contacts are tried for a code.
_VIA: Final = ("phone", "email")


@dataclass(frozen=True, slots=True)
class CodeSending:
    """What the agent needs to offer and check codes: the service's code key, and the
    kinds of contact the service can send to (``phone``, ``email``)."""

    key: CodeKey
    reaches: frozenset[str]


def code_sending_from(settings: Settings, key: TokenKey) -> CodeSending | None:
    """How this deployment sends codes: to phones when SMS is on, to email when email is;
    None when neither is, or the token key holds no secret to derive the code key from."""
    reaches = frozenset(
        via for via, setting in (("phone", settings.notify_sms), ("email", settings.notify_email))
        if setting != "off"
    )  # fmt: skip
    secret = key.secret_material()
    if not reaches or secret is None:
        return None
    return CodeSending(CodeKey(secret), reaches)


def live_challenge(step: Step, now: datetime) -> dict[str, Any] | None:
    """The conversation's open code challenge, unless it expired."""
    challenge = step.state.challenge
    if challenge is None or datetime.fromisoformat(challenge["expires_at"]) <= now:
        return None
    return dict(challenge)


def _words(step: Step) -> dict[str, Any]:
    codes = step.business.pack.verification.codes
    return {"length": codes.length, "minutes": codes.minutes}


async def offer_code(step: Step, owner: str) -> str | None:
    """Send ``owner`` a code (or remind them of the one sent) and say so; None when no code
    can be sent (the service sends none, or the record has no contact it can reach)."""
    sending = step.codes
    if sending is None or not sending.reaches:
        return None
    challenge = live_challenge(step, step.now)
    if challenge is not None and challenge["customer_id"] == owner:
        return step.say("code_sent", to=challenge["to"], via=challenge["via"], again=True,
                        **_words(step))  # fmt: skip
    customer = await step.systems.customers.get(owner)
    if customer is None:
        return None
    for kind in _VIA:
        value = customer.phone if kind == "phone" else customer.email
        if value and kind in sending.reaches:
            request_action(step, SEND_CODE, {"customer_id": owner, "via": kind})
            return step.say("code_sent", to=told(kind, value), via=kind, again=False,
                            **_words(step))  # fmt: skip
    return None


async def answer_code(step: Step, code: str) -> str | None:
    """Check ``code`` against the open challenge: None when it proved who the customer is
    (the turn goes on with what they asked), else the reply to give."""
    sending = step.codes
    challenge = step.state.challenge
    if sending is None or challenge is None:
        return None
    rejected = {"method": "otp", "challenge_id": challenge["challenge_id"],
                "customer_id": challenge["customer_id"]}  # fmt: skip
    if live_challenge(step, step.now) is None:
        step.writer.emit("verification.rejected", {**rejected, "reason": "expired"})
        return step.say("code_expired", **_words(step))
    conversation_id = step.state.conversation_id
    if sending.key.matches(conversation_id, challenge["challenge_id"], code, challenge["digest"]):
        await prove(step, str(challenge["customer_id"]), "otp")
        return None
    step.writer.emit("verification.rejected", {**rejected, "reason": "wrong"})
    left = int(challenge["max_attempts"]) - int(challenge["attempts"]) - 1
    return step.say("code_wrong", tries_left=max(left, 0), **_words(step))
