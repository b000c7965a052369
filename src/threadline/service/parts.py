"""The running service's parts, as one typed value the API's routes share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from threadline.agents.runtime import BotRuntime
from threadline.agents.worker import BotWorker
from threadline.api.limits import PerClient
from threadline.audit import AuditTrail
from threadline.bus.memory import MemoryBus
from threadline.business import Business
from threadline.business.current import CurrentBusiness
from threadline.channels.chat.adapter import ChatAdapter
from threadline.channels.inperson.channel import InPersonChannel
from threadline.core.ports import Storage
from threadline.engine.commands import Commands
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.engine.outbox import Relay
from threadline.engine.projections import ConversationIndex
from threadline.governance import Erasure
from threadline.identity.challenges import Verifications
from threadline.identity.lockouts import Lockouts
from threadline.identity.oidc import OidcVerifier
from threadline.identity.recognition import Recognition
from threadline.identity.service import Identity
from threadline.routing.router import Router
from threadline.routing.workfeed import WorkFeed
from threadline.security import RevocationList, TokenIssuer, TokenVerifier
from threadline.settings import Settings
from threadline.systems import Systems

if TYPE_CHECKING:  # the voice channel is an extra
    from threadline.channels.voice.telephony.gateway import VoiceGateway


@dataclass(frozen=True, slots=True)
class Service:
    """Every part of a running service, built and started by :func:`~.wiring.running`.

    The parts keep their own state; this value only holds them, so a route
    names exactly the parts it uses.
    """

    settings: Settings
    #: The business the service works for now (a pack reload replaces it).
    current: CurrentBusiness
    #: The business's own systems: its tools and customer records.
    systems: Systems
    #: Who an identifier belongs to: the directory, else the business's customer system.
    recognition: Recognition
    store: Storage
    bus: MemoryBus
    #: Publishes what the log holds to the bus (the outbox).
    relay: Relay
    conversations: Conversations
    #: The one write path of requests, the desk and the channels.
    commands: Commands
    #: Appended events as they are published: conversation streams and listeners.
    hub: LiveHub
    #: Every conversation's state, for listings and look-ups.
    index: ConversationIndex
    #: Routing state folded from the log for the desks' live work streams.
    work_feed: WorkFeed
    router: Router
    #: The bot in this process, or None when it runs in a worker process.
    bot: BotRuntime | None
    bot_worker: BotWorker | None
    tokens: TokenIssuer
    verifier: TokenVerifier
    revocations: RevocationList
    #: The tamper-evident trail of privileged actions (staff reads, merges, admin work).
    audit: AuditTrail
    identity: Identity
    #: The limits on wrong proofs, per customer and per client.
    lockouts: Lockouts
    verifications: Verifications
    #: Checks a customer's ID token from the trusted identity provider, when one is set.
    oidc: OidcVerifier | None
    chat: ChatAdapter
    #: How many chat sessions one network address may open.
    chat_sessions: PerClient
    #: The phone channel; None without the ``voice`` extra.
    voice: VoiceGateway | None
    inperson: InPersonChannel
    #: Erases customers (crypto-shredding) and purges what was derived from their data.
    erasure: Erasure

    @property
    def business(self) -> Business:
        """The business being served now."""
        return self.current.business
