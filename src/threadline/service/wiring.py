"""Start-up in one place: :func:`running` builds the service's parts, starts them in
order and stops them in reverse.

The order matters: the projections and listeners are attached to the live hub
before the relay publishes anything, every bus consumer has subscribed before
the relay starts, and the relay stops first, so nothing is published to a part
that has stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from threadline.agents.codes import code_sending_from
from threadline.agents.configured import agent_for, provider_from
from threadline.agents.protocol import Agent
from threadline.agents.runtime import BotRuntime
from threadline.agents.worker import BotWorker
from threadline.api.limits import PerClient
from threadline.audit import AuditTrail
from threadline.bus.memory import MemoryBus
from threadline.business import Business, load_configured
from threadline.business.current import CurrentBusiness
from threadline.channels import voice as voice_channel
from threadline.channels.chat.adapter import ChatAdapter
from threadline.channels.chat.joins import ChatJoins
from threadline.channels.inperson.channel import inperson_channel
from threadline.core.errors import ConfigurationError
from threadline.core.ports import Bus, Storage
from threadline.core.tasks import stop_tasks
from threadline.engine.commands import Commands
from threadline.engine.conversations import Conversations
from threadline.engine.live import LiveHub
from threadline.engine.outbox import Relay
from threadline.engine.projections import ConversationIndex
from threadline.governance import Erasure
from threadline.governance.retention import Retention, run_on_schedule
from threadline.identity.challenges import Verifications
from threadline.identity.code_courier import CodeCourier
from threadline.identity.links import ConversationLinks
from threadline.identity.lockouts import Lockouts
from threadline.identity.oidc import OidcVerifier
from threadline.identity.recognition import Recognition
from threadline.identity.service import Identity
from threadline.notify import notifiers_from
from threadline.routing.router import Router
from threadline.routing.staffing import routing_config
from threadline.routing.workfeed import WorkFeed
from threadline.security import RevocationList, TokenIssuer, TokenVerifier
from threadline.security.master_key import key_provider_from_settings
from threadline.service.parts import Service
from threadline.settings import Settings, data_dir
from threadline.store import encrypt, open_directory, open_store
from threadline.systems import CustomerRecords, Systems


@asynccontextmanager
async def running(settings: Settings, store: Storage | None = None) -> AsyncIterator[Service]:
    """The service, started; stopped when the block ends.

    Pass ``store`` to run on an already open store (left open); otherwise the
    store ``settings`` name is opened and closed here.
    """
    oidc = _oidc(settings)
    keys = key_provider_from_settings(settings)  # production without a master key stops here
    current = CurrentBusiness(load_configured(settings.business))
    async with AsyncExitStack() as stack:
        if store is None:
            store = await open_store(settings.store, keys=keys)
            stack.push_async_callback(store.close)
        else:
            encrypt(store, keys)  # a store opened without keys is given the service's
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
        audit = AuditTrail.open(settings, store, tokens.key)  # no signing key stops us here
        await audit.note_policy()
        business = current.business
        systems = Systems.open(business, data_dir(settings))
        stack.push_async_callback(systems.close)
        identity, verifications = await _identity(store, bus, conversations, current, systems,
                                                  audit)  # fmt: skip
        recognition = Recognition(identity, systems.customers)
        codes = code_sending_from(settings, tokens.key)
        lockouts = Lockouts(store)
        erasure = Erasure(store, identity, index, conversations, audit=audit)
        hub.listen(erasure.observe)  # erasures another process recorded (the command line)
        bot = None
        if worker is not None:
            await worker.start(store, relay.appended)
            stack.push_async_callback(worker.stop)
            relay.forward(worker.feed)
            erasure.follow(worker.forget)
        else:
            model = provider_from(settings, business)
            if model is not None:
                stack.push_async_callback(model.close)

            def agent() -> Agent:
                return agent_for(systems, model, codes=codes, lockouts=lockouts,
                                 conversations=conversations)  # fmt: skip

            bot = BotRuntime(conversations, agent())
            await bot.start(bus)
        if codes is not None:  # the service sends the codes its agents ask for
            notifiers = notifiers_from(settings, business.brand_name)
            await CodeCourier(commands, codes.key, notifiers, current, systems.customers,
                              identity).start(bus)  # fmt: skip
        joins = ChatJoins(commands, index, current, timedelta(hours=settings.reopen_window_hours))
        await joins.start(bus)
        router = Router(conversations, routing_config(business))
        await router.start(bus)
        stack.push_async_callback(router.stop)
        if settings.retention_every_hours:
            retention = Retention(store, lambda: current.business,
                                  on_expired=conversations.forget)  # fmt: skip
            every = timedelta(hours=settings.retention_every_hours)
            stack.push_async_callback(_stop, asyncio.create_task(run_on_schedule(retention, every)))
        inperson = await inperson_channel(
            settings, store, bus, commands, current, tokens.key, revocations
        )
        voice = None
        if voice_channel.missing() is None:  # else the voice endpoints answer 503
            from threadline.channels.voice.telephony.gateway import voice_gateway

            voice = await stack.enter_async_context(
                voice_gateway(
                    settings,
                    store,
                    bus,
                    hub,
                    commands,
                    current,
                    recognition,
                    tokens.key,
                    revocations,
                )
            )

        def reloaded(new: Business) -> None:
            """The parts that keep something derived from the business take the new one."""
            systems.use(new)
            if bot is not None:
                bot.replace_agent(agent())
            if worker is not None:
                worker.reload()
            router.config = routing_config(new)

        current.on_change(reloaded)
        await relay.start()
        stack.push_async_callback(relay.stop)
        yield Service(
            settings=settings,
            current=current,
            systems=systems,
            recognition=recognition,
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
            audit=audit,
            identity=identity,
            lockouts=lockouts,
            verifications=verifications,
            oidc=oidc,
            chat=ChatAdapter(commands, current),
            chat_sessions=PerClient(
                "chat sessions", settings.chat_sessions_per_hour, timedelta(hours=1)
            ),
            voice=voice,
            inperson=inperson,
            erasure=erasure,
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
    store: Storage,
    bus: Bus,
    conversations: Conversations,
    current: CurrentBusiness,
    systems: Systems,
    audit: AuditTrail,
) -> tuple[Identity, Verifications]:
    """The identity directory, caught up, following the links that conversations make;
    step-up checks compare a customer's answer to the business's record of them."""
    identity = Identity(store, await open_directory(store), audit=audit)
    await identity.projection.catch_up()
    # What conversations prove (a caller's postcode) reaches the directory too.
    await ConversationLinks(identity, conversations.codec).start(bus)
    records: CustomerRecords = systems.customers

    async def knowledge(customer_id: str) -> str | None:
        """The answer the first knowledge proof the pack names expects of the customer."""
        fields = list(current.business.pack.verification.knowledge.values())
        record = await records.get(customer_id)
        return record.knowledge.get(fields[0]) if record is not None and fields else None

    return identity, Verifications(identity, knowledge)


async def _stop(task: asyncio.Task[None]) -> None:
    await stop_tasks([task])
