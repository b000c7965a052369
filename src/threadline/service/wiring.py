"""Start-up in one place: :func:`running` builds the service's parts, starts them in
order and stops them in reverse.

The order matters: the projections and listeners are attached to the live hub
before the relay publishes anything, every bus consumer has subscribed before
the relay starts, and the relay stops first, so nothing is published to a part
that has stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from threadline.agents.bot import NorthwindBot
from threadline.agents.runtime import BotRuntime
from threadline.agents.worker import BotWorker
from threadline.bus.memory import MemoryBus
from threadline.business import Business, northwind
from threadline.channels import voice as voice_channel
from threadline.channels.chat.adapter import ChatAdapter
from threadline.channels.inperson.channel import inperson_channel
from threadline.core.errors import ConfigurationError
from threadline.core.events import utcnow
from threadline.core.ports import Bus, Storage
from threadline.engine.commands import Commands
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.engine.outbox import Relay
from threadline.engine.projections import ConversationIndex
from threadline.identity.challenges import OutboxCourier, Verifications
from threadline.identity.links import ConversationLinks
from threadline.identity.oidc import OidcVerifier
from threadline.identity.service import Identity, demo_profiles
from threadline.routing.demo import routing_config
from threadline.routing.router import Router
from threadline.routing.workfeed import WorkFeed
from threadline.security import RevocationList, TokenIssuer, TokenVerifier
from threadline.service.parts import Service
from threadline.settings import Settings
from threadline.store import open_directory, open_store


@asynccontextmanager
async def running(settings: Settings, store: Storage | None = None) -> AsyncIterator[Service]:
    """The service, started; stopped when the block ends.

    Pass ``store`` to run on an already open store (left open); otherwise the
    store ``settings`` name is opened and closed here.
    """
    oidc = _oidc(settings)
    async with AsyncExitStack() as stack:
        if store is None:
            store = await open_store(settings.store)
            stack.push_async_callback(store.close)
        bus = MemoryBus(store)
        stack.push_async_callback(bus.close)
        relay = Relay(store, bus, store)
        worker = BotWorker(settings) if settings.bot_process else None

        def appended() -> None:
            relay.appended()
            if worker is not None and not relay.fed:  # a fed relay passes its pages on
                worker.poke()

        conversations = Conversations(
            store, snapshot_every=settings.snapshot_every, on_append=appended
        )
        commands = Commands(conversations)
        codec = conversations.codec
        hub = LiveHub(store)
        await hub.attach(bus)
        index = await ConversationIndex.build(store)
        hub.listen(index.observe)
        hub.listen(conversations.observe)  # the bot worker's turns, for one
        work_feed = WorkFeed(store, codec)
        hub.listen(work_feed.ring)
        revocations = await RevocationList.load(store)
        hub.listen(revocations.follower(codec))  # also from other processes
        tokens = TokenIssuer.from_settings(settings)
        verifier = TokenVerifier.from_settings(settings, revocations)
        business = northwind(utcnow())
        identity, verifications = await _identity(store, bus, conversations, business)
        bot = None
        if worker is not None:
            await worker.start(store, relay.appended)
            stack.push_async_callback(worker.stop)
            relay.forward(worker.feed)
        else:
            bot = BotRuntime(conversations, NorthwindBot(business))
            await bot.start(bus)
        router = Router(conversations, routing_config(business))
        await router.start(bus)
        stack.push_async_callback(router.stop)
        inperson = await inperson_channel(
            settings, store, bus, commands, business, tokens.key, revocations
        )
        voice = None
        if voice_channel.missing() is None:  # else the voice endpoints answer 503
            from threadline.channels.voice.telephony.gateway import voice_gateway

            voice = await stack.enter_async_context(
                voice_gateway(
                    settings, store, bus, hub, commands, business, tokens.key, revocations
                )
            )
        await relay.start()
        stack.push_async_callback(relay.stop)
        yield Service(
            settings=settings,
            business=business,
            store=store,
            bus=bus,
            relay=relay,
            conversations=conversations,
            commands=commands,
            hub=hub,
            index=index,
            work_feed=work_feed,
            router=router,
            bot=bot,
            bot_worker=worker,
            tokens=tokens,
            verifier=verifier,
            revocations=revocations,
            identity=identity,
            verifications=verifications,
            oidc=oidc,
            chat=ChatAdapter(commands),
            voice=voice,
            inperson=inperson,
        )


def _oidc(settings: Settings) -> OidcVerifier | None:
    """The trusted identity provider's verifier: all three settings, or none."""
    issuer, audience, jwks = settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url
    if issuer is None and audience is None and jwks is None:
        return None
    if issuer is None or audience is None or jwks is None:
        raise ConfigurationError(
            "set all of THREADLINE_OIDC_ISSUER, THREADLINE_OIDC_AUDIENCE, THREADLINE_OIDC_JWKS_URL"
        )
    return OidcVerifier(issuer, audience, jwks)


async def _identity(
    store: Storage, bus: Bus, conversations: Conversations, business: Business
) -> tuple[Identity, Verifications]:
    """The identity directory, caught up and seeded with the business's customers
    (idempotent), following the links that conversations make."""
    identity = Identity(store, await open_directory(store))
    await identity.projection.catch_up()
    await identity.seed(demo_profiles(business.customers))
    # What conversations prove (a caller's postcode) reaches the directory too.
    await ConversationLinks(identity, conversations.codec).start(bus)

    def postcode(customer_id: str) -> str | None:
        customer = business.customer(customer_id)
        return customer.postcode if customer is not None else None

    return identity, Verifications(identity, OutboxCourier(), postcode)
