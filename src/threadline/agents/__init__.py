"""Automated agents: the protocol, the embedded engine, and the runtime that runs them."""

from threadline.agents.engine import AGENT_VERSION, EmbeddedAgent, agent_id
from threadline.agents.escalation import EscalationPolicy, Handoff, Route, TurnSignals, escalate
from threadline.agents.intents import (
    KNOWLEDGE_PREFIX,
    MODEL_ID,
    Calibration,
    IntentClassifier,
    Prediction,
    classifier_for,
)
from threadline.agents.protocol import Agent, Turn, Understanding
from threadline.agents.sentiment import sentiment
from threadline.agents.slots import Extraction, SlotReader

__all__ = [
    "AGENT_VERSION",
    "KNOWLEDGE_PREFIX",
    "MODEL_ID",
    "Agent",
    "Calibration",
    "EmbeddedAgent",
    "EscalationPolicy",
    "Extraction",
    "Handoff",
    "IntentClassifier",
    "Prediction",
    "Route",
    "SlotReader",
    "Turn",
    "TurnSignals",
    "Understanding",
    "agent_id",
    "classifier_for",
    "escalate",
    "sentiment",
]
