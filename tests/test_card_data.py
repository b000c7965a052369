"""Card numbers and security codes are never stored (issue 14, hole 1; PCI DSS 3.3, 3.4):
typed in chat (whole, dashed, split over two messages), spoken on a call (real speech,
the embedded STT) and noted in person, on both stores, the log output included. At most
the last four digits stay, and the bot says it cannot take card details this way."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.journey import visitor_says
from tests.stored_bytes import stored_bytes
from tests.twilio_fakes import ACCOUNT_SID, AUTH_TOKEN, voice_settings
from threadline.api.app import create_app
from threadline.api.deps import service_of
from threadline.privacy import luhn_valid
from threadline.testing.caller import PhoneCaller

VISA = "4111111111111111"
MASTERCARD_2 = "2223000048400011"
AMEX = "378282246310005"
CARDS = (VISA, MASTERCARD_2, AMEX)
CVV_SAID = ("cvv is 9731", "security code is 9731", "cvv 9731")
#: Digits with at most a space or dash between them, as a card is typed or stored.
DIGIT_RUN = re.compile(rb"\d(?:[ -]?\d){12,18}")


def full_cards(data: bytes) -> set[str]:
    """Luhn-valid card numbers (13 to 19 digits, spaced or dashed or not) in ``data``."""
    found = set()
    for match in DIGIT_RUN.finditer(data):
        digits = re.sub(rb"\D", b"", match.group()).decode()
        for length in range(13, min(19, len(digits)) + 1):
            for start in range(len(digits) - length + 1):
                candidate = digits[start : start + length]
                if candidate in CARDS and luhn_valid(candidate):
                    found.add(candidate)
    return found


@pytest.fixture
async def server(any_store: Any) -> Any:
    async with LiveServer(create_app(voice_settings(), store=any_store)) as live:
        yield live


async def test_cards_typed_in_chat_keep_only_their_last_four_and_are_refused(
    server: Any, any_store: Any, pg_schema: str, capfd: Any
) -> None:
    cid, replies = await visitor_says(
        server,
        "hi, can I pay for order 1042 with my card 4111 1111 1111 1111?",
        "ok the other one is 2223-0000-4840-0011 and the cvv is 9731",
        "my amex number is 3782 822463",
        "10005",
    )
    assert all("can't take card details" in reply for reply in replies)
    texts = [e.payload["text"] for e in await service_of(server.app).conversations.timeline(cid)
             if e.type == "message.received"]  # fmt: skip
    assert texts == [
        "hi, can I pay for order 1042 with my card [card ending 1111]?",
        "ok the other one is [card ending 0011] and the cvv is [security code]",
        "my amex number is [card digits]",
        "[card ending 0005]",
    ]
    written = await stored_bytes(any_store, pg_schema) + "".join(capfd.readouterr()).encode()
    assert full_cards(written) == set()
    assert all(said.encode() not in written for said in CVV_SAID)
    slots = [e.payload for e in await service_of(server.app).conversations.timeline(cid)
             if e.type == "slot.filled"]  # fmt: skip
    assert slots == []  # a turn that gives card details fills nothing: "1111" is no order


@pytest.mark.usefixtures("espeak")
async def test_a_card_spoken_on_a_call_is_refused_and_never_stored(
    server: Any, any_store: Any, pg_schema: str, capfd: Any
) -> None:
    call = PhoneCaller(server.http, AUTH_TOKEN, ACCOUNT_SID)
    await call.dial("+14155550123")  # a new call: the greeting is the webhook's <Say>
    await call.say("My credit card number is 4111 1111 1111 1111.")
    reply = await call.next_reply(0)
    await call.hang_up()
    timeline = await service_of(server.app).conversations.timeline(call.conversation_id)
    heard = [e.payload["text"] for e in timeline if e.type == "utterance.transcribed"]
    assert heard and "[card" in heard[-1], heard  # digits were heard, and redacted
    said = [e.payload["text"] for e in timeline if e.type == "message.sent"]
    assert "can't take card details" in said[-1], (heard, said)
    assert reply is not None
    written = await stored_bytes(any_store, pg_schema) + "".join(capfd.readouterr()).encode()
    assert full_cards(written) == set()
