"""The fixed set of demo utterances that the voice accuracy test and benchmark speak.

Each is something a Northwind caller says, with the intent the bot should
find and the key words the transcript must carry (order numbers and postcodes
as digits, store names). Written for speech, as callers say things: postcodes
digit by digit, order numbers as digits or in pairs ("ten fifty seven"); most
are not the classifier's own examples. Utterances whose intent is ``None``
are slot turns (a postcode or an order number on its own), checked for their
key words only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class DemoUtterance:
    """What the caller says, the intent it carries, and the words the transcript needs."""

    text: str
    intent: str | None
    keywords: tuple[str, ...] = ()


def _u(text: str, intent: str | None, *keywords: str) -> DemoUtterance:
    return DemoUtterance(text, intent, keywords)


#: espeak-ng voices the accuracy set is spoken in (an American, a British and a female voice).
VOICES: Final = ("en-us", "en-gb", "en-us+f3")

UTTERANCES: Final = (
    # order_status
    _u("Where is my order 1042?", "order_status", "1042"),
    _u("I'm calling to track order 1057.", "order_status", "1057"),
    _u("Can you check the status of order 1043?", "order_status", "1043"),
    _u("My laptop order 1042 is late.", "order_status", "1042"),
    _u("My package still hasn't arrived.", "order_status"),
    _u("Has my order shipped yet?", "order_status"),
    _u("When will my delivery get here?", "order_status"),
    _u("I'm waiting for a parcel, where is it?", "order_status"),
    _u("Any news on my shipment?", "order_status"),
    _u("The order number is ten fifty seven and it never showed up.", "order_status", "1057"),
    # book_appointment
    _u("I want to book a repair.", "book_appointment", "repair"),
    _u("Can I come in tomorrow to get my phone fixed?", "book_appointment"),
    _u("I need an appointment for a cracked screen.", "book_appointment", "appointment"),
    _u("Book me a repair on Saturday morning.", "book_appointment", "repair"),
    _u("Can you schedule a repair at the Broadway store?", "book_appointment", "broadway"),
    _u("I'd like an appointment on Friday afternoon.", "book_appointment", "appointment"),
    _u("My battery is dying, can someone look at it?", "book_appointment"),
    _u("Are there any repair slots tomorrow?", "book_appointment", "repair"),
    # store_hours
    _u("When are you open?", "store_hours"),
    _u("What are your Sunday hours in Oakland?", "store_hours", "oakland"),
    _u("What time does the Market Street store close today?", "store_hours", "market street"),
    _u("Are you open on Saturday?", "store_hours"),
    _u("Is the Broadway store open on Sunday?", "store_hours", "broadway"),
    _u("What are your opening hours?", "store_hours"),
    _u("How late is the San Francisco store open tonight?", "store_hours", "san francisco"),
    _u("What time do you open tomorrow morning?", "store_hours"),
    # cancel_order
    _u("Cancel my order.", "cancel_order", "cancel"),
    _u("I want to cancel order 1057.", "cancel_order", "cancel", "1057"),
    _u("Please cancel the order I placed yesterday.", "cancel_order", "cancel"),
    _u("I changed my mind, please cancel it.", "cancel_order", "cancel"),
    _u("How do I cancel an order?", "cancel_order", "cancel"),
    _u("I don't want it anymore, cancel the laptop.", "cancel_order", "cancel"),
    # refund
    _u("I want my money back.", "refund"),
    _u("Can I get a refund?", "refund", "refund"),
    _u("I returned the phone case and want a refund.", "refund", "refund"),
    _u("When will I get my refund?", "refund", "refund"),
    _u("Please refund my order.", "refund", "refund"),
    _u("I want to return my laptop.", "refund", "return"),
    # complaint
    _u("This is unacceptable.", "complaint"),
    _u("I want to make a complaint.", "complaint", "complaint"),
    _u("Your service is terrible.", "complaint"),
    _u("I am very disappointed with how this was handled.", "complaint"),
    _u("This is ridiculous, I have waited for weeks.", "complaint"),
    _u("I am really fed up with Northwind.", "complaint"),
    # human
    _u("Let me talk to a person.", "human", "person"),
    _u("Agent, please.", "human", "agent"),
    _u("I want to speak to a human.", "human", "human"),
    _u("Can you put me through to a real person?", "human", "person"),
    _u("Connect me with an agent.", "human", "agent"),
    _u("Can I talk to someone?", "human"),
    # payment_dispute
    _u("I was charged twice for my order.", "payment_dispute", "charge"),
    _u("There is a charge on my card I don't recognise.", "payment_dispute", "charge"),
    # greeting and thanks
    _u("Hello, I need some help.", "greeting"),
    _u("Thank you, that's all.", "thanks"),
    # slot turns
    _u("My postcode is 9 4 1 0 3.", None, "94103"),
    _u("The postcode is 9 4 6 1 2.", None, "94612"),
    _u("My zip code is 9 4 3 0 1.", None, "94301"),
    _u("The order number is ten forty three.", None, "1043"),
)
