"""Personal data found and redacted: cards typed and said, codes, ids, phones, e-mails.

The labelled corpus (``tests/data/pii_corpus.jsonl``, written by
``bench/pii_corpus.py``) holds the recall, precision and redaction figures;
the examples below pin each behaviour on its own.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench import pii_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline import privacy
from threadline.privacy import (
    KINDS,
    Carry,
    Detector,
    Finding,
    NationalIdPattern,
    NationalIdRegistry,
    NerEngine,
    NerUnavailable,
    Redacted,
    Redactor,
    default_national_ids,
    find,
    payment_started,
)

CORPUS = Path(__file__).resolve().parent / "data" / "pii_corpus.jsonl"
PINNED = {
    "BRANDS", "DEFAULT_KINDS", "KINDS", "UK_NINO", "US_SSN", "Brand", "Carry", "Detector",
    "Finding", "NationalIdPattern", "NationalIdRegistry", "NerEngine", "NerUnavailable",
    "Redacted", "Redactor", "brand_of", "card_brand", "card_talk", "default_national_ids", "find",
    "luhn_valid", "payment_started",
}  # fmt: skip
#: Published test numbers, one or more per brand.
CARDS = {
    "visa": "4111111111111111",
    "visa 13 digits": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard 2-series": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "discover 644": "6445644564456445",
    "jcb": "3530111333300000",
    "diners": "36227206271667",
    "diners 300": "30569309025904",
    "unionpay": "6200000000000005",
    "unionpay 19 digits": "6250941006528599008",
    "maestro": "6759649826438453",
}
HARD_NEGATIVES = (
    "Where is order 1042?",
    "my order is NW-1042",
    "send it to SW1A 1AA please",
    "the postcode is 94107",
    "can you call back at 10:30 or 14:45",
    "it cost $1,299.00 in the end",
    "I paid £49.99 on 12/05/2024",
    "it was logged at 2024-05-12 18:46:24",
    "the one-time code is 123456",
    "my tracking number is 4111 1111 1111 1112",
    "reference 5555555555554445",
    "I'm in room 204 and bought 3 items",
    "the card ending 4242 was declined",
    "do you need the CVV as well?",
    "the old id was 666-12-3456 and 000-12-3456 and 123-00-4567",
    "my order number is one oh four two",
)
SPOKEN = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, f.text) for f in find(text)]


def conversation(messages: list[str], redactor: Redactor) -> Iterator[Redacted]:
    carry: Carry | None = None
    for message in messages:
        out = redactor.redact(message, carry=carry)
        carry = out.carry
        yield out


def luhn(digits: str) -> bool:
    total = 0
    for place, char in enumerate(reversed(digits)):
        value = int(char) * (2 if place % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def digit_runs(text: str) -> list[str]:
    """Digits typed or said, joined where single spaces, dashes, commas or fillers part them."""
    text = re.sub(r"\bdouble (\w+)", r"\1 \1", text.lower())
    tokens = re.findall(r"[a-z]+|[0-9]+|[^a-z0-9 ,\-]+", text)
    runs, current = [], ""
    for token in tokens:
        if token.isdigit() or token in SPOKEN:
            current += SPOKEN.get(token, token)
        elif token != "um":
            runs.append(current)
            current = ""
    return [r for r in [*runs, current] if r]


# -- the public API ---------------------------------------------------------------------------


def test_the_exports_are_pinned() -> None:
    assert set(privacy.__all__) == PINNED


def test_a_finding_is_a_frozen_value() -> None:
    finding = find("4111 1111 1111 1111")[0]
    with pytest.raises(AttributeError):
        finding.kind = "phone"  # type: ignore[misc]
    assert finding == Finding("card", 0, 19, "4111 1111 1111 1111", "visa")


# -- cards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", CARDS.values(), ids=CARDS.keys())
def test_a_card_of_every_brand_is_found(number: str) -> None:
    assert kinds(f"please charge {number} thanks") == [("card", number)]


@pytest.mark.parametrize(
    "written",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "4111 1111-1111 1111",
     "3782 822463 10005", "3782-822463-10005", "6250 9410 0652 8599 008", "411 11111 111 11111",
     "4111\u00a01111\u00a01111\u00a01111", "4111–1111–1111–1111"],
)  # fmt: skip
def test_a_card_is_found_contiguous_spaced_or_dashed_in_any_grouping(written: str) -> None:
    assert kinds(f"card: {written}.") == [("card", written)]


@pytest.mark.parametrize(
    "said",
    [
        "four one one one one one one one one one one one one one one one",
        "Four one one one, one one one one, one one one one, one one one one",
        "four one double one double one double one double one double one double one double one",
        "five five five five, five five five five, five five five five, four four four four",
        "three seven eight two eight two two four six three one oh oh oh five",
        "4111 one one one one 1111 one one one one",
        "FOUR ONE ONE ONE um ONE ONE ONE ONE one one one one one one one one",
        "4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
        "for 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
    ],
)
def test_a_card_said_as_words_is_found(said: str) -> None:
    assert kinds(f"yes my card number is {said} thank you") == [("card", said)]


def test_a_luhn_invalid_sixteen_digit_number_is_no_card() -> None:
    assert kinds("4111 1111 1111 1112") == []


def test_an_international_phone_number_is_no_card() -> None:
    assert [k for k, _ in kinds("call +44 20 7946 0958")] == ["phone"]


# -- security codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("cvv 123", "123"),
        ("the security code is 1234", "1234"),
        ("the three digits on the back are 737", "737"),
        ("cvc: 123", "123"),
        ("CVV2 456", "456"),
        ("737 is the cvv", "737"),
        ("c v v is one two three", "one two three"),
    ],
)
def test_a_security_code_is_found_in_context(text: str, code: str) -> None:
    assert kinds(text) == [("cvv", code)]


def test_a_bare_three_digit_number_is_no_security_code() -> None:
    assert kinds("I'd like 123 of them, room 456") == []


# -- national ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["ssn 123-45-6789", "ssn 123 45 6789", "my ssn is 123456789", "social is one two "
             "three four five six seven eight nine"],
)  # fmt: skip
def test_an_ssn_is_found_typed_or_in_context(text: str) -> None:
    assert [k for k, _ in kinds(text)] == ["national_id"]


@pytest.mark.parametrize("ssn", ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567",
                                 "123-45-0000"])  # fmt: skip
def test_an_ssn_the_ssa_never_issues_is_not_flagged(ssn: str) -> None:
    assert kinds(f"ssn {ssn}") == []


@pytest.mark.parametrize("nino", ["AB 12 34 56 C", "AB123456C", "JG 103759 A", "ab 12 34 56 c"])
def test_a_national_insurance_number_is_found(nino: str) -> None:
    assert kinds(f"my NI number is {nino}") == [("national_id", nino)]


@pytest.mark.parametrize("nino", ["QQ 12 34 56 C", "DA 12 34 56 A", "BG 12 34 56 A", "ZZ123456D"])
def test_a_national_insurance_prefix_never_issued_is_not_flagged(nino: str) -> None:
    assert kinds(f"my NI number is {nino}") == []


def test_callers_register_their_own_national_id_format() -> None:
    registry = default_national_ids()
    registry.register(
        NationalIdPattern("ca_sin", re.compile(r"\b\d{3}-\d{3}-\d{3}\b"), lambda m: luhn(
            m.group().replace("-", "")))
    )  # fmt: skip
    found = Detector(national_ids=registry).find("SIN 046-454-286 please")
    assert [(f.kind, f.text, f.label) for f in found] == [("national_id", "046-454-286", "ca_sin")]


def test_a_format_name_registers_once() -> None:
    with pytest.raises(ValueError, match="us_ssn"):
        NationalIdRegistry([privacy.US_SSN, privacy.US_SSN])


# -- phones and e-mails -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone", ["(415) 555-0132", "+1 212 555 0100", "+44 20 7946 0000", "+49 30 901820",
              "+33 1 42 68 53 00", "+81 3-1234-5678"],
)  # fmt: skip
def test_a_phone_number_is_found(phone: str) -> None:
    assert kinds(f"call me on {phone} after five") == [("phone", phone)]


def test_the_default_region_reads_national_phone_numbers() -> None:
    assert [f.text for f in Detector(region="GB").find("ring 020 7946 0958")] == ["020 7946 0958"]


def test_an_email_address_is_found() -> None:
    assert kinds("send it to maria.garcia+orders@mail.example.co.uk.") == [
        ("email", "maria.garcia+orders@mail.example.co.uk")
    ]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_a_hard_negative_is_not_flagged(text: str) -> None:
    assert kinds(text) == []


# -- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_a_hard_negative_is_stored_as_it_was(text: str) -> None:
    out = Redactor().redact(text)
    assert (out.text, out.carry, out.card_seen) == (text, None, False)


def test_a_card_keeps_only_its_last_four_digits() -> None:
    out = Redactor().redact("card 4111 1111 1113 1234 please")
    assert out.text == "card [card ending 1234] please"


def test_a_security_code_and_a_national_id_are_replaced() -> None:
    out = Redactor().redact("cvv 737, ssn 123-45-6789, NINO AB 12 34 56 C.")
    assert out.text == "cvv [security code], ssn [national id], NINO [national id]."


def test_phones_and_emails_are_kept_unless_named() -> None:
    text = "call (415) 555-0132 or mail a@example.com"
    assert Redactor().redact(text).text == text
    assert Redactor(kinds={"phone", "email"}).redact(text).text == "call [phone] or mail [email]"


def test_the_rest_of_the_text_stays_as_it_was() -> None:
    out = Redactor().redact("  Hi!\n\tmy card:  4111-1111-1111-1111 ,\n thanks  ")
    assert out.text == "  Hi!\n\tmy card:  [card ending 1111] ,\n thanks  "


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="cards"):
        Redactor(kinds={"cards"})


def test_a_card_split_across_two_messages_is_redacted_in_both() -> None:
    first, second = conversation(["my card is 4111 1111", "1111 1111"], Redactor())
    assert (first.text, second.text) == ("my card is [card digits]", "[card ending 1111]")
    assert second.carry is None


def test_a_few_words_may_come_before_the_rest_of_a_card() -> None:
    messages = ["my card is 4111 1111", "ok and the rest is 1111 1111"]
    texts = [o.text for o in conversation(messages, Redactor())]
    assert texts == ["my card is [card digits]", "ok and the rest is [card ending 1111]"]


def test_a_card_split_across_three_messages_is_redacted_in_all() -> None:
    texts = [o.text for o in conversation(["card no. 4111", "1111 1111", "1111"], Redactor())]
    assert texts == ["card no. [card digits]", "[card digits]", "[card ending 1111]"]


def test_a_spoken_card_split_across_two_turns_is_redacted_in_both() -> None:
    said = [
        "the card number is four one one one one one one one",
        "one one one one one one one one",
    ]
    texts = [o.text for o in conversation(said, Redactor())]
    assert texts == ["the card number is [card digits]", "[card ending 1111]"]


def test_an_announced_partial_card_is_redacted_where_it_stands() -> None:
    out = Redactor().redact("my card number is 4111 1111 and I'll send the rest later")
    assert out.text == "my card number is [card digits] and I'll send the rest later"
    assert out.carry is None


def test_the_carry_holds_no_digits_beyond_the_first_four() -> None:
    carry = Redactor().redact("my card is 5555 4444 3333").carry
    assert carry is not None
    assert "44443333" not in repr(carry) and "4444" not in repr(carry)


def test_leading_digits_that_complete_no_card_are_kept() -> None:
    first, second = conversation(["my card is 4111 1111", "1042 is my order"], Redactor())
    assert first.text == "my card is [card digits]"
    assert second.text == "1042 is my order"


def test_a_carry_lasts_one_message() -> None:
    outs = list(conversation(["my card is 4111 1111", "ok", "1111 1111"], Redactor()))
    assert [o.text for o in outs[1:]] == ["ok", "1111 1111"]


def test_a_phone_number_is_not_taken_for_the_start_of_a_card() -> None:
    assert Redactor().redact("call me on 2345 6789").text == "call me on 2345 6789"


def test_card_seen_is_set_by_card_digits_and_codes() -> None:
    redactor = Redactor()
    assert redactor.redact("4111 1111 1111 1111").card_seen
    assert redactor.redact("my card is 4111 1111").card_seen
    assert redactor.redact("cvv 123").card_seen
    assert not redactor.redact("where is order 1042?").card_seen


@pytest.mark.parametrize(
    ("text", "started"),
    [("can I give you my card number?", True), ("my card is 4111 1111", True),
     ("cvv 123", True), ("where is order 1042?", False), ("my card was declined", False)],
)  # fmt: skip
def test_payment_started_says_when_card_details_are_given(text: str, started: bool) -> None:
    assert payment_started(text) is started


# -- names and addresses (the ner extra) --------------------------------------------------------


def test_ner_without_presidio_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)
    with pytest.raises(NerUnavailable, match=re.escape("pip install 'threadline[ner]'")):
        NerEngine()


def test_ner_without_a_spacy_model_fails_and_downloads_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("presidio_analyzer")
    spacy_cli = pytest.importorskip("spacy.cli")

    def no_download(*_: object, **__: object) -> None:
        raise AssertionError("a model download was attempted")

    monkeypatch.setattr(spacy_cli, "download", no_download)
    with pytest.raises(NerUnavailable, match="not-a-model"):
        NerEngine(model="not-a-model")


def test_ner_findings_become_names_and_are_redacted() -> None:
    presidio = pytest.importorskip("presidio_analyzer")
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    registry = presidio.RecognizerRegistry(supported_languages=["en"])
    person = presidio.Pattern("titled", r"\bMs [A-Z][a-z]+", 0.8)
    registry.add_recognizer(
        presidio.PatternRecognizer(supported_entity="PERSON", patterns=[person])
    )
    analyzer = presidio.AnalyzerEngine(
        registry=registry,
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
    )
    redactor = Redactor(kinds={"card", "name"}, ner=NerEngine(analyzer))
    out = redactor.redact("this is Ms Garcia, card 4111 1111 1111 1111")
    assert out.text == "this is [name], card [card ending 1111]"


# -- the corpus ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def redacted(corpus: list[dict[str, Any]]) -> list[list[Redacted]]:
    """Every item redacted as a conversation, all kinds named so every finding is reported."""
    return [list(conversation(item["messages"], Redactor(kinds=KINDS))) for item in corpus]


def test_the_corpus_file_is_what_the_generator_writes() -> None:
    assert CORPUS.read_text(encoding="utf-8") == pii_corpus.render(pii_corpus.generate())


def test_the_corpus_covers_every_kind_channel_and_many_negatives(corpus: list[Any]) -> None:
    labelled = Counter(e["kind"] for item in corpus for e in item["entities"])
    negatives = sum(1 for item in corpus if not item["entities"])
    assert len(corpus) >= 1000
    assert negatives / len(corpus) >= 0.30
    assert set(labelled) == set(KINDS)
    assert {item["channel"] for item in corpus} == {"chat", "voice", "inperson"}
    assert any(len(item["messages"]) > 1 and item["entities"] for item in corpus)
    assert max(len(m) for item in corpus for m in item["messages"]) <= 500


def test_recall_is_at_least_99_percent_for_every_kind(
    corpus: list[Any], redacted: list[Any]
) -> None:
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for item, outs in zip(corpus, redacted, strict=True):
        for entity in item["entities"]:
            totals[entity["kind"]] += 1
            found = outs[entity["message"]].findings
            hits[entity["kind"]] += any(
                f.kind == entity["kind"] and f.start <= entity["start"] and entity["end"] <= f.end
                for f in found
            )
    recall = {kind: hits[kind] / totals[kind] for kind in totals}
    assert min(recall.values()) >= 0.99, recall


def test_precision_is_at_least_95_percent_overall(corpus: list[Any], redacted: list[Any]) -> None:
    right = wrong = 0
    for item, outs in zip(corpus, redacted, strict=True):
        for index, out in enumerate(outs):
            labels = [e for e in item["entities"] if e["message"] == index]
            for f in out.findings:
                ok = any(
                    f.kind == e["kind"] and f.start < e["end"] and e["start"] < f.end
                    for e in labels
                )
                right, wrong = right + ok, wrong + (not ok)
    assert right / (right + wrong) >= 0.95, (right, wrong)


def test_no_redacted_item_keeps_a_card_number(corpus: list[Any], redacted: list[Any]) -> None:
    for item, outs in zip(corpus, redacted, strict=True):
        text = " ".join(o.text for o in outs)
        runs = digit_runs(text)
        cards = "".join(
            "".join(digit_runs(e["value"])) for e in item["entities"] if e["kind"] == "card"
        )
        assert not cards or all(cards not in run for run in runs), item["id"]
        for run in runs:
            is_card = 13 <= len(run) <= 19 and run[0] in "23456" and luhn(run)
            assert not is_card, (item["id"], run)


def test_no_redacted_item_keeps_a_security_code_or_id(
    corpus: list[Any], redacted: list[Any]
) -> None:
    for item, outs in zip(corpus, redacted, strict=True):
        for entity in item["entities"]:
            if entity["kind"] not in {"cvv", "national_id"}:
                continue
            text = outs[entity["message"]].text
            value = entity["value"]
            if re.search("[A-Za-z]{2}", value) and not re.search(r"\b(?:oh|one|two)", value):
                squeeze = re.sub(r"\W", "", value).upper()  # a National Insurance number
                assert squeeze not in re.sub(r"\W", "", text).upper(), item["id"]
            else:
                assert "".join(digit_runs(value)) not in digit_runs(text), item["id"]


# -- any card, any style ------------------------------------------------------------------------

BRAND_STARTS = st.sampled_from([
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("6011", 16), ("644", 16), ("649", 19), ("65", 17), ("3528", 16),
    ("3589", 19), ("36", 14), ("38", 16), ("300", 14), ("305", 18), ("62", 16), ("62", 19),
    ("5018", 13), ("6759", 18),
])  # fmt: skip
PROSE = st.text(st.sampled_from(list("abcdefghij klmnopqrstuvwxyz .,!?'()\n")), max_size=60)


@st.composite
def written_cards(draw: st.DrawFn) -> tuple[str, str]:
    head, length = draw(BRAND_STARTS)
    body = head + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(
        head) - 1, max_size=length - len(head) - 1)))  # fmt: skip
    number = body + pii_corpus.luhn_digit(body)
    style = draw(st.sampled_from(["contiguous", "spaces", "dashes", "any"]))
    if style == "contiguous":
        return number, number
    if style in {"spaces", "dashes"}:
        return number, pii_corpus.grouped(number, [4] * 4, " " if style == "spaces" else "-")
    sizes = draw(st.lists(st.integers(2, 6), min_size=6, max_size=6))
    parts, at = [number[:4]], 4
    for size in sizes:
        parts.append(number[at : at + size])
        at += size
    parts = [p for p in [*parts, number[at:]] if p]
    seps = draw(st.lists(st.sampled_from([" ", "-"]), min_size=len(parts), max_size=len(parts)))
    return number, parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=False))


@settings(max_examples=300, deadline=None)
@given(card=written_cards(), before=PROSE, after=PROSE)
def test_any_card_of_any_brand_in_any_style_in_any_text_is_redacted(
    card: tuple[str, str], before: str, after: str
) -> None:
    number, written = card
    start = len(before) + 1
    out = Redactor().redact(f"{before} {written} {after}")
    assert any(f.kind == "card" and f.start <= start and start + len(written) <= f.end
               for f in out.findings)  # fmt: skip
    assert not any(number[:-4] in run for run in digit_runs(out.text))


@pytest.mark.parametrize(
    ("heard", "stored"),
    [
        ("My credit card number is 4111111111111111111111111.",
         "My credit card number is [card digits]."),
        ("My card number is 41, 11, 11, 11, 11, 11, 11, 11,", "My card number is [card digits],"),
        ("My card number is 4111, 111, 111, 111, 111, 111, 111.",
         "My card number is [card digits]."),
        ("card number is 4111, then order 1042, 1043",
         "card number is [card digits], then order 1042, 1043"),
    ],
)  # fmt: skip
def test_a_card_speech_to_text_ran_together_or_broke_up_is_redacted(heard, stored) -> None:
    assert Redactor().redact(heard).text == stored
