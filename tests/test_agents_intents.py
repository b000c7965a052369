"""The embedded intent classifier trained on the Northwind pack's examples: accuracy on
held-out paraphrases, and honest confidence."""

from __future__ import annotations

import pytest

from threadline.agents.intents import (
    KNOWLEDGE_PREFIX,
    UNKNOWN,
    IntentClassifier,
    classifier_for,
    examples_of,
    tokenize,
)
from threadline.business import Business

# Paraphrases the classifier never saw: typed, spoken (as speech-to-text writes it),
# terse, and a few with typos.
HELD_OUT: dict[str, list[str]] = {
    "order_status": [
        "where's my laptop",
        "my package still hasn't come",
        "can you tell me where order 1043 is",
        "has order number 1057 been dispatched",
        "i'm still waiting for my delivery from last week",
        "whens my order arriving",
        "status of order 1042 please",
        "my order is late where is it",
        "wheres my ordr",
    ],
    "book_appointment": [
        "i'd like to get my cracked screen repaired",
        "can i book a slot at the repair counter on friday",
        "do you have a repair appointment tomorrow morning",
        "i need someone to fix my laptop keyboard",
        "could i schedule a visit to get my phone fixed",
        "my phone won't charge can i bring it in",
        "appointment for a screen repair please",
        "book a repir for tomorrow",
    ],
    "store_hours": [
        "what are the opening times on sunday",
        "is the oakland store open today",
        "what time does market street close",
        "are you guys open on the weekend",
        "till when are you open today",
        "when do you open on monday",
        "what hours is the broadway shop open",
        "are u open now",
    ],
    "cancel_order": [
        "please cancel order 1057",
        "i don't want the laptop anymore cancel the order",
        "i'd like to cancel what i ordered",
        "can you stop the order from shipping",
        "cancel my purchase please",
        "cancell my order",
    ],
    "refund": [
        "i'd like a refund for my phone case",
        "can i have my money back please",
        "how do i get refunded",
        "i want to return this and get my money back",
        "refund please",
        "has my refund been processed",
    ],
    "payment_dispute": [
        "i've been charged two times for one order",
        "there is a payment on my card that i didn't make",
        "you overcharged me",
        "the amount on my card statement is wrong",
    ],
    "complaint": [
        "this is absolutely unacceptable",
        "i'm very unhappy with your service",
        "worst customer service ever",
        "i'm disappointed with the way you handled this",
        "this is a disgrace",
        "i want to complain about the delivery",
    ],
    "human": [
        "can i speak to a real human please",
        "i want an agent",
        "let me talk to somebody",
        "transfer me to a person",
        "get me a representative",
        "i want to talk to someone real",
        "put me through to a person please",
    ],
    "greeting": [
        "hello there",
        "hi good morning",
        "hey hi",
    ],
    "thanks": [
        "thank you very much",
        "thanks a lot",
        "ok thanks bye",
    ],
}

OUT_OF_DOMAIN = [
    "what's the weather like in paris",
    "tell me a joke",
    "who won the football last night",
    "asdkj qwpeoi zmxnc",
    "blorp fizzle wump",
    "the quick brown fox jumps over the lazy dog",
    "what is the capital of australia",
    "recommend a good pizza recipe",
    "uh um er",
    "lorem ipsum dolor sit amet",
]


@pytest.fixture(scope="module")
def classifier(northwind: Business) -> IntentClassifier:
    return classifier_for(northwind)


def test_the_classifier_learns_the_packs_intents_and_knowledge_questions(
    northwind: Business, classifier: IntentClassifier
) -> None:
    assert set(classifier.intents) == set(northwind.pack.intents) | {
        KNOWLEDGE_PREFIX + "returns", KNOWLEDGE_PREFIX + "warranty"}  # fmt: skip
    assert classifier_for(northwind) is classifier  # built once per set of examples


def test_questions_the_packs_knowledge_answers_are_recognised(
    classifier: IntentClassifier,
) -> None:
    for text, entry in [
        ("does the warranty cover water damage", "warranty"),
        ("whats your return policy", "returns"),
    ]:
        prediction = classifier.classify(text)
        assert (prediction.intent, prediction.confidence >= 0.8) == (
            KNOWLEDGE_PREFIX + entry, True), text  # fmt: skip


def test_held_out_paraphrases_are_not_training_examples(northwind: Business) -> None:
    examples = examples_of(northwind)
    trained = {text for phrases in examples.values() for text in phrases}
    held = [text for phrases in HELD_OUT.values() for text in phrases]
    assert len(held) >= 40
    assert not trained & set(held)
    assert set(HELD_OUT) <= set(examples)


def test_held_out_paraphrases_are_classified_at_least_nine_times_in_ten(
    classifier: IntentClassifier,
) -> None:
    cases = [(intent, text) for intent, texts in HELD_OUT.items() for text in texts]
    wrong = [(i, t) for i, t in cases if classifier.classify(t).intent != i]
    assert len(wrong) / len(cases) <= 0.10, wrong


def test_held_out_paraphrases_are_mostly_confident(classifier: IntentClassifier) -> None:
    confident = [
        text
        for intent, texts in HELD_OUT.items()
        for text in texts
        if classifier.classify(text).confidence >= 0.5
    ]
    total = sum(len(texts) for texts in HELD_OUT.values())
    assert len(confident) / total >= 0.8


def test_out_of_domain_text_gets_low_confidence(classifier: IntentClassifier) -> None:
    confidences = {text: classifier.classify(text).confidence for text in OUT_OF_DOMAIN}
    assert max(confidences.values()) < 0.4, confidences


def test_demo_examples_are_recognised_with_high_confidence(classifier: IntentClassifier) -> None:
    for text, intent in [
        ("where is my order", "order_status"),
        ("can I come in tomorrow", "book_appointment"),
        ("Sunday hours in Oakland", "store_hours"),
        ("I want my money back", "refund"),
        ("agent please", "human"),
    ]:
        prediction = classifier.classify(text)
        assert (prediction.intent, prediction.confidence >= 0.8) == (intent, True), text


def test_confidence_and_alternatives_are_probabilities_best_first(
    classifier: IntentClassifier,
) -> None:
    prediction = classifier.classify("i want to cancel and get a refund")
    values = [prediction.confidence, *prediction.alternatives.values()]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)
    assert sum(values) <= 1.0 + 1e-9
    assert prediction.intent not in prediction.alternatives


def test_text_unlike_any_example_is_unknown_with_zero_confidence(
    classifier: IntentClassifier,
) -> None:
    for text in ["?!", "zxcv bnm"]:
        prediction = classifier.classify(text)
        assert (prediction.intent, prediction.confidence, prediction.alternatives) == (
            UNKNOWN,
            0.0,
            {},
        ), text


def test_classification_is_deterministic_across_instances(northwind: Business) -> None:
    text = "my parcel is lost, can I get a new one"
    examples = examples_of(northwind)
    assert IntentClassifier(examples).classify(text) == IntentClassifier(examples).classify(text)


def test_misspelt_words_stay_close_to_their_intent(classifier: IntentClassifier) -> None:
    for text, intent in [
        ("can i get a refnud", "refund"),
        ("talk to a persn", "human"),
        ("wen are you opn", "store_hours"),
        ("ordr status", "order_status"),
    ]:
        assert classifier.classify(text).intent == intent, text


def test_numbers_are_one_feature_whatever_their_value() -> None:
    assert tokenize("Track order #1042, or 1057") == ["track", "order", "#", "or", "#"]


def test_a_classifier_learns_from_any_examples_it_is_given() -> None:
    classifier = IntentClassifier({"weather": ["is it raining", "forecast for today"],
                                   "joke": ["tell me a joke", "make me laugh"]})  # fmt: skip
    assert classifier.classify("will it rain today").intent == "weather"
