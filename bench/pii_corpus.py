"""A labelled synthetic corpus of personal data in customer messages.

``python -m bench.pii_corpus [--out PATH]`` writes ``tests/data/pii_corpus.jsonl``:
one conversation fragment a line, ``{"id", "messages", "entities", "channel"}``,
each entity ``{"kind", "message", "start", "end", "value"}`` with ``value`` the
exact text of the span. The generator is seeded, so every run writes the same
file; a test holds the committed file to it.

It covers cards of every brand (typed contiguous, spaced, dashed or in the
brand's grouping; split across two or three messages; said as words on the
phone), security codes in context, US SSNs, UK National Insurance numbers,
phones of several countries and e-mails; and over a third of items hold
none but look as if they might: order numbers, postcodes, prices, dates,
times, one-time codes, Luhn-invalid 16-digit numbers, invalid ids.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

SEED: Final = 7_202_405
OUT: Final = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_corpus.jsonl"
LIMITS: Final = (80, 160, 240, 320, 420, 500)

Pick = Callable[[random.Random], str]


def options(text: str, sep: str = "|") -> list[str]:
    return text.split(sep)


# A card brand as the generator knows it: name, first digits, length.
CARD_SPECS: Final[tuple[tuple[str, Pick, int], ...]] = (
    ("visa", lambda r: "4", 16),
    ("visa", lambda r: "4", 13),
    ("visa", lambda r: "4", 19),
    ("mastercard", lambda r: str(r.randint(51, 55)), 16),
    ("mastercard", lambda r: str(r.randint(2221, 2720)), 16),
    ("amex", lambda r: r.choice(["34", "37"]), 15),
    ("discover", lambda r: "6011", 16),
    ("discover", lambda r: str(r.randint(644, 649)), 16),
    ("discover", lambda r: "65", 16),
    ("discover", lambda r: "6011", 19),
    ("jcb", lambda r: str(r.randint(3528, 3589)), 16),
    ("jcb", lambda r: str(r.randint(3528, 3589)), 19),
    ("diners", lambda r: "36", 14),
    ("diners", lambda r: str(r.randint(300, 305)), 14),
    ("diners", lambda r: "38", 16),
    ("unionpay", lambda r: "62", 16),
    ("unionpay", lambda r: "62", 19),
    ("maestro", lambda r: r.choice(["5018", "5020", "5038", "6304", "6759", "6761"]), 13),
    ("maestro", lambda r: r.choice(["5018", "5020", "6304", "6759", "6762", "6763"]), 18),
    ("maestro", lambda r: r.choice(["5018", "5038", "6304", "6759", "6761", "6763"]), 19),
)
UNITS: Final = options("zero one two three four five six seven eight nine", " ")

# Customer text around the personal data; each {name} is a hard negative drawn by ``fill``.
CHAT_PADDING: Final = options(
    "Hi, I ordered a pair of trail running shoes last week and they still haven't arrived.|"
    "Could you check what's going on with order {order}?|"
    "The tracking page hasn't moved since {date}.|"
    "I'd like to pay off the rest of the balance today if that's possible.|"
    "It came to {price} in the end, which is more than the website said.|"
    "My postcode is {postcode} in case you need it.|"
    "I'm free after {time} if someone needs to call back.|"
    "The one-time code you sent me was {otp} but the page rejected it.|"
    "Thanks so much for sorting this out, I really appreciate it.|"
    "I've been a customer for years and this has never happened before.|"
    "The delivery window was {time} to {time} and nobody came.|"
    "I was charged {price} twice on {date}.|"
    "Order {order} was the second one, the first arrived fine.|"
    "Sorry for the long message, it's been a frustrating week.|"
    "I bought {n} of them but only one was in the box.|"
    "Can you also update the delivery address to the one in {postcode}?|"
    "The parcel reference on the label says {order}.|"
    "Happy to hold while you check.|"
    "I tried the app first but it kept crashing at the payment step.|"
    "Is there any way to get free shipping on the replacement?"
)
VOICE_PADDING: Final = options(
    "yeah hi i'm calling about an order i placed last week|"
    "um so basically i wanted to sort out the payment|"
    "can you hear me okay it's a bit noisy here|sorry i'm just getting my wallet out|"
    "okay great thank you|right so the delivery never turned up|i've got the card here now|"
    "hang on let me find my glasses|yes that's right|i was told to call this number by the shop|"
    "brilliant thanks for your patience|no worries take your time"
)
FIRST_NAMES: Final = options("maria james aisha tom li sofia david priya noah", " ")
LAST_NAMES: Final = options("garcia smith khan oconnor wong rossi miller patel", " ")
MAIL_DOMAINS: Final = options("example.com mail.example.org example.co.uk inbox.example.net", " ")
POSTCODES: Final = ("SW1A 1AA", "94107", "EC1A 1BB", "10115", "75008", "M1 1AE", "60614-2201")
Part = str | tuple[str, str]


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` followed by it pass the Luhn check."""
    total = 0
    for place, char in enumerate(reversed(body)):
        value = int(char) * (2 if place % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def card_number(r: random.Random, head: str, length: int) -> str:
    body = head + "".join(r.choice("0123456789") for _ in range(length - len(head) - 1))
    return body + luhn_digit(body)


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def grouped(number: str, sizes: list[int], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at : at + size])
        at += size
    return sep.join(p for p in [*parts, number[at:]] if p)


def typed_card(r: random.Random, number: str) -> str:
    """The card as someone types it: contiguous, in fours, or in the brand's own grouping."""
    style = r.choice(["contiguous", "spaces", "dashes", "spaces", "native", "any"])
    native = {15: [4, 6, 5], 14: [4, 6, 4], 13: [4, 3, 3, 3]}
    if style == "contiguous":
        return number
    if style == "any":  # groups of any size, a space or a dash between each
        out, at = number[:4], 4
        while at < len(number):
            size = r.randint(2, 6)
            out += r.choice([" ", "-"]) + number[at : at + size]
            at += size
        return out
    if style == "native" and len(number) in native:
        return grouped(number, native[len(number)], r.choice([" ", "-"]))
    return grouped(number, [4] * 4, "-" if style == "dashes" else " ")


def spoken(r: random.Random, number: str, *, groups: int = 4) -> str:
    """Digits as speech-to-text writes them: words, "oh" for zero, "double four", some typed,
    or one digit at a time with commas ("4, 1, 1, 1") and "for" for four."""
    if r.random() < 0.12:
        return ", ".join("for" if d == "4" and r.random() < 0.5 else d for d in number)
    chunks: list[str] = []
    for at in range(0, len(number), groups):
        group = number[at : at + groups]
        # Now and then a group comes out as digits, never two in a row (a comma would part them).
        if r.random() < 0.08 and not (chunks and chunks[-1].isdigit()):
            chunks.append(group)
            continue
        words: list[str] = []
        i = 0
        while i < len(group):
            digit = group[i]
            word = ("oh" if r.random() < 0.6 else "zero") if digit == "0" else UNITS[int(digit)]
            pair = i + 1 < len(group) and group[i + 1] == digit and r.random() < 0.4
            words.append(f"double {word}" if pair else word)
            i += 2 if pair else 1
        chunks.append(" ".join(words))
    return r.choice([" ", ", ", " ", " um "]).join(chunks)


def fill(r: random.Random, template: str) -> str:
    """A padding sentence with its hard negatives drawn."""
    n = r.randint
    values = {
        "order": r.choice([f"{n(1000, 9999)}", f"NW-{n(1000, 9999)}", f"#{n(10000, 99999)}"]),
        "price": r.choice([f"${n(1, 2)},{n(100, 999)}.00", f"£{n(5, 300)}.99", f"${n(10, 99)}.50"]),
        "date": r.choice([f"{n(1, 12)}/{n(10, 28)}/2024", f"2024-0{n(1, 9)}-{n(10, 28)}", "2 May"]),
        "time": r.choice([f"{n(1, 11)}:{r.choice(['00', '15', '30'])}", f"{n(1, 11)}pm", "17:30"]),
        "postcode": r.choice(POSTCODES),
        "otp": f"{n(100000, 999999)}",
        "n": str(n(2, 5)),
    }
    out = template
    while "{" in out:
        before, _, rest = out.partition("{")
        name, _, after = rest.partition("}")
        out = before + values[name] + after
    return out


@dataclass
class Message:
    """One message being written, with the spans of the personal data it holds."""

    text: str = ""
    entities: list[tuple[str, int, int]] = field(default_factory=list)


def say(*parts: Part) -> Message:
    """A message from plain parts and ``(text, kind)`` parts."""
    message = Message()
    for part in parts:
        text, kind = (part, "") if isinstance(part, str) else part
        start = len(message.text)
        message.text += text
        if kind:
            message.entities.append((kind, start, len(message.text)))
    return message


def template(pattern: str, value: str, kind: str) -> Message:
    before, _, after = pattern.partition("{}")
    return say(before, (value, kind), after)


@dataclass
class Corpus:
    r: random.Random
    items: list[dict[str, Any]] = field(default_factory=list)

    def pad(self, message: Message, channel: str, limit: int, sides: str) -> Message:
        """Customer text before and after ``message`` (only on ``sides``), up to ``limit``."""
        pool = VOICE_PADDING if channel == "voice" else CHAT_PADDING
        before: list[str] = []
        after: list[str] = []
        size = len(message.text) + 1  # and a full stop, if text follows it
        for _ in range(14):
            sentence = fill(self.r, self.r.choice(pool))
            if size + len(sentence) + 2 > limit:
                break
            side = "before" if self.r.random() < 0.5 else "after"
            if side in sides:
                (before if side == "before" else after).append(sentence)
                size += len(sentence) + 2
        end = ". " if channel == "voice" else " "
        head = "".join(s + end for s in before)
        core = message.text
        if after and core[-1:].isalnum():
            core += "."
        padded = Message(head + core + "".join(end.rstrip() + " " + s for s in after))
        padded.entities = [(k, s + len(head), e + len(head)) for k, s, e in message.entities]
        return padded

    def emit(self, channel: str, *messages: Message) -> None:
        limit = self.r.choice(LIMITS)
        # A card split across messages ends the first and starts the next: no text between.
        last = len(messages) - 1
        sides = ["before" * (i == 0) + "after" * (i == last) for i in range(len(messages))]
        while True:
            done = [self.pad(m, channel, limit, s) for m, s in zip(messages, sides, strict=True)]
            if all(map(_codes_unique, done)):
                break
        entities = [
            {"kind": k, "message": i, "start": s, "end": e, "value": m.text[s:e]}
            for i, m in enumerate(done)
            for k, s, e in m.entities
        ]
        number = f"pii-{len(self.items) + 1:04d}"
        texts = [m.text for m in done]
        self.items.append(
            {"id": number, "messages": texts, "entities": entities, "channel": channel}
        )


def _codes_unique(message: Message) -> bool:
    """Whether no security code's digits stand elsewhere in the message, as "$1,580.00" would."""
    codes = [message.text[s:e] for k, s, e in message.entities if k == "cvv"]
    rest = message.text
    for _, start, end in message.entities:
        rest = rest[:start] + " " * (end - start) + rest[end:]
    return not any(re.search(rf"(?<![0-9]){code}(?![0-9])", rest) for code in codes)


def cvv_for(r: random.Random, brand: str) -> str:
    return str(r.randint(1000, 9999) if brand == "amex" else r.randint(100, 999))


def typed_cards(c: Corpus) -> None:
    r = c.r
    opening = options("my card number is |Card: |Please charge |you can put it on ||Use this: ")
    opening += ["The long number on my card is ", "Here you go "]
    closing = options("| thanks|, expiry 08/27| please.|. The name on the card is the same.")
    for round_ in range(16):
        for brand, head, length in CARD_SPECS:
            number = card_number(r, head(r), length)
            parts: list[Part] = [r.choice(opening), (typed_card(r, number), "card")]
            if round_ % 4 == 0:
                code = r.choice([" cvv ", " and the CVV is ", ", CVC: ", " security code is "])
                parts += [code, (cvv_for(r, brand), "cvv")]
            parts.append(r.choice(closing))
            c.emit(r.choice(["chat", "chat", "inperson"]), say(*parts))


def split_cards(c: Corpus) -> None:
    r = c.r
    for round_ in range(4):
        for _, head, length in CARD_SPECS:
            number = card_number(r, head(r), length)
            cut = r.choice([8, 12]) if length > 13 else 8
            sep = r.choice([" ", "-"])
            start = grouped(number[:cut], [4, 4, 4], sep)
            if round_ % 2:  # a card word announces it, so any grouping will do
                opening = r.choice(["my card number is ", "Card number: ", "ok the card is "])
                first = say(opening, (start if r.random() < 0.5 else number[:cut], "card"))
            else:
                first = say(r.choice(["", "so ", "it's "]), (start, "card"))
            first.text += r.choice(["", ".", "..."])
            rest = (grouped(number[cut:], [4, 4, 4], sep), "card")
            second = say(r.choice(["", "and ", "then "]), rest, r.choice(["", " thanks", "."]))
            c.emit("chat", first, second)
    for _, head, length in CARD_SPECS[::2]:  # three messages
        number = card_number(r, head(r), length)
        c.emit(
            "chat",
            say("my card number is ", (number[:4], "card")),
            say((grouped(number[4:12], [4, 4], " "), "card")),
            say((grouped(number[12:], [4, 4], " "), "card"), " done"),
        )


def spoken_cards(c: Corpus) -> None:
    r = c.r
    opening = options("my card number is |it's |okay the long number is |right it's a visa |")
    codes = [" and the c v v is ", ". security code is ", ", the three digits on the back are "]
    for round_ in range(7):
        for brand, head, length in CARD_SPECS:
            words = spoken(r, card_number(r, head(r), length), groups=r.choice([4, 4, 3]))
            if r.random() < 0.2:
                words = words[0].upper() + words[1:]
            parts: list[Part] = [r.choice(opening), (words, "card")]
            if round_ % 3 == 0:
                parts += [r.choice(codes), (spoken(r, cvv_for(r, brand)), "cvv")]
            c.emit("voice", say(*parts))
        for _, head, length in CARD_SPECS[::3] if round_ < 2 else ():  # split across two turns
            number = card_number(r, head(r), length)
            first = say("the card number is ", (spoken(r, number[:8]), "card"))
            c.emit("voice", first, say((spoken(r, number[8:]), "card")))


def security_codes(c: Corpus) -> None:
    r = c.r
    typed = options(
        "the CVV is {}|cvv {}|CVC: {}|security code is {}|the three digits on the back are {}|"
        "{} is the cvv|CVV2 {}|card security code {}|CSC {}|the code on the back of the card is {}"
    )
    voice = "the c v v is {}|security code is {}|and the three digits on the back are {}|c v c {}"
    for _ in range(6):
        for pattern in typed:
            c.emit("chat", template(pattern, cvv_for(r, r.choice(["visa", "amex"])), "cvv"))
        for pattern in options(voice):
            c.emit("voice", template(pattern, spoken(r, str(r.randint(100, 999))), "cvv"))


def ssn(r: random.Random) -> tuple[str, str, str]:
    area = r.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}", f"{r.randint(1, 99):02d}", f"{r.randint(1, 9999):04d}"


def nino(r: random.Random) -> str:
    first, second = r.choice("ABCEGHJKLMNOPRSTWXYZ"), r.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
        second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    d, suffix = digits(r, 6), r.choice("ABCD")
    pair = first + second
    return r.choice(
        [f"{pair} {d[:2]} {d[2:4]} {d[4:]} {suffix}", f"{pair}{d}{suffix}", f"{pair} {d} {suffix}"]
    )


def national_ids(c: Corpus) -> None:
    r = c.r
    ssn_patterns = options(
        "my SSN is {}|Social security number: {}|ssn {}|{} is my social security number|"
        "for the tax form my social is {}"
    )
    for _ in range(70):
        value = r.choice(["-", " ", "-"]).join(ssn(r))
        c.emit(
            r.choice(["chat", "inperson"]), template(r.choice(ssn_patterns), value, "national_id")
        )
    for _ in range(20):
        c.emit(
            "chat", template(r.choice(["my ssn is {}", "SSN: {}"]), "".join(ssn(r)), "national_id")
        )
        words = spoken(r, "".join(ssn(r)), groups=3)
        pattern = r.choice(["my social security number is {}", "my social is {}"])
        c.emit("voice", template(pattern, words, "national_id"))
    nino_patterns = "My national insurance number is {}|NI number: {}|NINO {}|it's {} for payroll"
    for _ in range(60):
        value = nino(r).lower() if r.random() < 0.15 else nino(r)
        pattern = r.choice(options(nino_patterns))
        c.emit(r.choice(["chat", "inperson"]), template(pattern, value, "national_id"))


def phone(r: random.Random) -> str:
    def d(n: int) -> str:
        return digits(r, n)

    area = r.choice(options("212 312 415 617 646 702 206 303 512 213", " "))
    return r.choice([
        f"({area}) 555-01{d(2)}", f"{area}-555-01{d(2)}", f"+1 {area} 555 01{d(2)}",
        f"{area}.555.01{d(2)}", f"+44 20 7946 0{d(3)}", f"+44 161 496 0{d(3)}",
        f"+44 7700 900{d(3)}", f"+49 30 {d(8)}", f"+49 151 {d(8)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+61 2 9{d(3)} {d(4)}", f"+61 4{d(2)} {d(3)} {d(3)}",
        f"+91 9{d(4)} {d(5)}", f"+81 3-{d(4)}-{d(4)}", f"+34 91 {d(3)} {d(2)} {d(2)}",
        f"+353 1 {d(3)} {d(4)}", f"+55 11 9{d(4)}-{d(4)}", f"+31 20 {d(3)} {d(4)}",
    ])  # fmt: skip


def email(r: random.Random) -> str:
    first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
    local = r.choice(
        [f"{first}.{last}", f"{first[0]}{last}{r.randint(1, 99)}", f"{first}_{last}+orders"]
    )
    return f"{local.capitalize() if r.random() < 0.2 else local}@{r.choice(MAIL_DOMAINS)}"


def contacts(c: Corpus) -> None:
    r = c.r
    phones = options(
        "call me on {}|my number is {}|you can reach me at {} after 5pm|Mobile: {}|"
        "text me on {} please|my husband's number is {} if I don't pick up"
    )
    for _ in range(110):
        c.emit(r.choice(["chat", "inperson"]), template(r.choice(phones), phone(r), "phone"))
    emails = "my email is {}|send the receipt to {} please|Email: {}|it's {} I think|use {}?"
    for _ in range(80):
        c.emit("chat", template(r.choice(options(emails)), email(r), "email"))
    for _ in range(30):  # several kinds in one message
        the_ssn = ("-".join(ssn(r)), "national_id")
        parts = ("call me on ", (phone(r), "phone"), " or email ", (email(r), "email"))
        c.emit("chat", say(*parts, ", and my SSN is ", the_ssn))


def luhn_invalid(r: random.Random) -> str:
    number = card_number(r, r.choice(["4", "51", "6011", "37", "3530"]), 16)
    return number[:-1] + str((int(number[-1]) + r.randint(1, 9)) % 10)


def negative(c: Corpus) -> None:
    """An item with no personal data, made of what looks most like it."""
    r, n = c.r, c.r.randint
    a, g, s = ssn(r)
    bad_ssn = r.choice([f"000-{g}-{s}", f"666-{g}-{s}", f"9{a[1:]}-{g}-{s}", f"{a}-00-{s}"])
    bad_nino = r.choice(["QQ 12 34 56 C", "BG 12 34 56 A", "DA 123456 B", "GB123456A"])
    chat = [
        lambda: f"Where is order {n(1000, 9999)}? It was due {fill(r, '{date}')}.",
        lambda: f"My order is NW-{n(1000, 9999)} and the postcode is {r.choice(POSTCODES)}.",
        lambda: fill(r, "I paid {price} at {time} on {date}."),
        lambda: f"The code you texted is {n(100000, 999999)}.",
        lambda: f"My tracking number is {grouped(luhn_invalid(r), [4] * 3, ' ')} it says delivered",
        lambda: f"reference {luhn_invalid(r)} from the courier, is that right?",
        lambda: f"The card ending {n(1000, 9999)} was declined yesterday.",
        lambda: f"Do you need the CVV as well? I'm in room {n(100, 999)}.",
        lambda: f"I returned {n(2, 9)} items from aisle {n(100, 999)} last week.",
        lambda: f"The old tax id on the form was {bad_ssn}, is that a problem?",
        lambda: f"The sample on the letter says {bad_nino}, what do I put?",
        lambda: f"It's {n(100, 999)} Harbour Road, {r.choice(POSTCODES)}, ring the bell.",
        lambda: f"My member number is {n(10000000, 99999999)} if that helps.",
        lambda: fill(r, f"The invoice says {n(10, 99)}/{n(1000, 9999)}, total {{price}}."),
        lambda: f"USPS says 9400 1{digits(r, 3)} {grouped(digits(r, 14), [4, 4, 4], ' ')}",
        lambda: (
            f"It was logged at 2024-0{n(1, 9)}-{n(10, 28)} {n(10, 23)}:{n(10, 59)}:{n(10, 59)}."
        ),
        lambda: f"The book is ISBN 978-0-{n(100, 999)}-{n(10000, 99999)}-{n(0, 9)}, a gift.",
        lambda: f"Pay it to account {digits(r, 8)}, sort code {n(10, 99)}-{n(10, 99)}-{n(10, 99)}.",
    ]
    voice = [
        lambda: f"my order number is {spoken(r, str(n(1000, 9999)))}",
        lambda: f"the postcode is {spoken(r, str(n(10000, 99999)))}",
        lambda: f"it was {r.choice(['twelve ninety nine', 'forty nine ninety five'])} in the end",
        lambda: f"can you call back at {r.choice(['eleven thirty', 'three', 'ten fifteen'])}",
        lambda: f"the code was {spoken(r, str(n(100000, 999999)))}",
        lambda: "i've had this card for about ten years",
    ]
    channel = r.choice(["chat", "chat", "inperson", "voice"])
    pool = voice if channel == "voice" else chat
    messages = [say(r.choice(pool)()) for _ in range(2 if r.random() < 0.2 else 1)]
    c.emit(channel, *messages)


MAKERS: Final = (typed_cards, split_cards, spoken_cards, security_codes, national_ids, contacts)


def generate(seed: int = SEED) -> list[dict[str, Any]]:
    """The corpus: the same items for the same seed."""
    corpus = Corpus(random.Random(seed))
    for make in MAKERS:
        make(corpus)
    for _ in range(len(corpus.items) * 3 // 5):
        negative(corpus)
    return corpus.items


def render(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the labelled personal-data corpus.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    items = generate()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(items), encoding="utf-8")
    negatives = sum(1 for item in items if not item["entities"])
    print(f"{len(items)} items, {negatives} without personal data -> {args.out}")


if __name__ == "__main__":
    main()
