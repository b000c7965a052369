"""The working state of one turn of the embedded agent, shared by the flow it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from threadline.agents.context import ConversationContext
from threadline.agents.slots import Extraction
from threadline.agents.turns import TurnWriter
from threadline.business import Business
from threadline.core.conversation import ConversationState
from threadline.systems import CustomerRecord, Systems

if TYPE_CHECKING:
    from threadline.agents.codes import CodeSending
    from threadline.identity.lockouts import Lockouts


@dataclass(slots=True)
class Step:
    """One turn in progress.

    ``slots`` is everything the conversation knows, this turn's included;
    ``answers`` the knowledge answers (a postcode) this contact has given, which
    alone prove who is asking — never ``slots`` from earlier contacts.
    """

    state: ConversationState
    writer: TurnWriter
    context: ConversationContext
    extraction: Extraction
    business: Business
    systems: Systems
    now: datetime
    today: date
    voice: bool
    intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    new_slots: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    #: Who the conversation is about, and the strongest proof this contact has given:
    #: both change within the turn when the customer proves who they are.
    customer_id: str | None = None
    level: str | None = None
    #: Knowledge answers said this turn that matched nobody, and whose record they were for.
    rejected: dict[str, str] = field(default_factory=dict)
    channel: str = "chat"
    #: How this agent sends and checks one-time codes; None when it offers none.
    codes: CodeSending | None = None
    outcomes: list[tuple[str, bool]] = field(default_factory=list)
    #: The limits on wrong proofs across conversations; None when this agent keeps none.
    lockouts: Lockouts | None = None
    #: Whether a lockout (of the customer asked about, or of this client) stopped a proof.
    locked_out: bool = False

    def variables(self, customer: CustomerRecord | None = None, **more: Any) -> dict[str, Any]:
        """What every reply template of this turn sees, and ``more``."""
        business = self.business
        return {
            "voice": self.voice, "business": business.name, "today": self.today,
            "locations": business.location_vars,
            "customer": customer.to_vars() if customer is not None else None,
            "slots": dict(self.slots), **more,
        }  # fmt: skip

    def say(self, reply: str, customer: CustomerRecord | None = None, **more: Any) -> str:
        """The text of reply ``reply`` (the intent's own, else the pack's) for this turn."""
        values = self.variables(customer, **more)
        return self.business.reply(reply, self.intent).render(self.voice, values)
