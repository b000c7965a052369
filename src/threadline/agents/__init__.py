"""The embedded, offline agent for the demo business: intents, slots, tools, escalation, bot."""

from threadline.agents.bot import BOT_ACTOR, BOT_ID, BOT_VERSION, NorthwindBot, Turn
from threadline.agents.escalation import (
    ESCALATION_V1,
    EscalationPolicy,
    Handoff,
    Route,
    TurnSignals,
    escalate,
)
from threadline.agents.intents import (
    MODEL_ID,
    Calibration,
    IntentClassifier,
    Prediction,
    default_classifier,
)
from threadline.agents.sentiment import sentiment
from threadline.agents.slots import Extraction, extract
from threadline.agents.tools import (
    Booking,
    BusinessTools,
    OrderLookup,
    StoreHours,
    ToolError,
)

__all__ = [
    "BOT_ACTOR",
    "BOT_ID",
    "BOT_VERSION",
    "ESCALATION_V1",
    "MODEL_ID",
    "Booking",
    "BusinessTools",
    "Calibration",
    "EscalationPolicy",
    "Extraction",
    "Handoff",
    "IntentClassifier",
    "NorthwindBot",
    "OrderLookup",
    "Prediction",
    "Route",
    "StoreHours",
    "ToolError",
    "Turn",
    "TurnSignals",
    "default_classifier",
    "escalate",
    "extract",
    "sentiment",
]
