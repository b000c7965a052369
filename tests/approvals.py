"""A refund that waits for a person: what the customer says and what the scripted model
answers, so the model-backed agent asks for approval (tests/test_model_agent.py shows the
turns one by one)."""

from __future__ import annotations

import json
from typing import Any, Final

from threadline.testing.model_server import Call, Scripted, call, say

#: The customer proves the order is theirs by its postcode, then asks for their money back.
PROOF: Final = "order 1042, postcode 94103"
ASK: Final = "I want my money back for it"
TOOL: Final = "refund_order"


def refund_script(business: Any) -> list[Scripted]:
    """The model's answers to :data:`PROOF` then :data:`ASK`: it looks the order up, then
    asks to refund it. With several agents, the first hands the conversation to the one
    that may refund."""
    spec = business.pack.model
    start = getattr(spec, "start", None)
    agents = getattr(spec, "agents", None) or {}
    handing: list[Scripted] = []
    if start is not None:
        refunder = next(name for name, agent in agents.items() if TOOL in agent.tools)
        if refunder != start:
            handed = json.dumps({"agent": refunder, "summary": "a refund"})
            handing.append(call(Call("transfer_to_agent", handed)))
    refund = {"order_number": "1042", "customer_id": "cus-lena", "reason": "lost parcel"}
    return [
        *handing,
        call(Call("lookup_order", '{"order_number": "1042"}')),
        say("Thanks, that's you."),
        call(Call(TOOL, json.dumps(refund))),
        say("I've asked a colleague to approve the refund."),
    ]
