"""The reference journey (DEMO.md), played against a running service by its people.

The customer chats about a late order and asks to pick it up in store (the
chat gives her a check-in code); later she calls, is welcomed back with the
open order, says her postcode and asks for a person; an agent at the desk
takes the offer and the call is warm-transferred; at the store an associate
checks her in by the code, reads the journey and resolves. Every part is
played through public interfaces: the chat WebSocket, the phone network
(signed webhooks, the media stream with speech synthesised by espeak-ng, the
REST calls warm transfer makes), the desk and in-person APIs. What anyone
hears or reads back is what the service answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from threadline.business import Business
from threadline.channels.chat.client import ChatClient
from threadline.channels.voice.codec import TELEPHONY_RATE
from threadline.security.sign_in import sign_in_people
from threadline.security.tokens import TokenIssuer
from threadline.systems import CustomerRecords
from threadline.testing.caller import PhoneCaller
from threadline.testing.people import DemoStopped, Desk, Narration, StoreCounter, Watcher, within
from threadline.testing.twilio import FakeTwilio, signed_post

if TYPE_CHECKING:
    from threadline.demo import Script

#: How long the tokens the journey's people use are valid.
TOKEN_TTL = timedelta(hours=1)
#: Seconds to wait for a reply or a step of the service.
PATIENCE = 30.0


@dataclass(frozen=True)
class Line:
    """The service as the journey reaches it, and the phone network's account."""

    http: str
    ws: str
    tokens: TokenIssuer
    records: CustomerRecords
    twilio: FakeTwilio
    twilio_token: str
    twilio_account: str


class Journey:
    """Plays a :class:`~threadline.demo.Script` on :class:`Line`; :meth:`play` returns the
    conversation's id."""

    def __init__(self, line: Line, business: Business, script: Script, say: Narration) -> None:
        self.line = line
        self.business = business
        self.script = script
        self.say = say
        self.conversation_id = ""
        self.watcher: Watcher | None = None
        self.code: dict[str, Any] | None = None

    def _token(self, subject: str, kind: str, claims: dict[str, Any] | None = None) -> str:
        return self.line.tokens.issue(subject, [kind], TOKEN_TTL, claims).token

    async def play(self) -> str:
        try:
            await self.chat()
            await self.call()
            await self.visit()
        finally:
            if self.watcher is not None:
                await self.watcher.close()
        return self.conversation_id

    # -- chat ------------------------------------------------------------------------------

    async def chat(self) -> None:
        """She chats, signed in on the shop's site, and leaves with a check-in code."""
        me = self.script.customer_id
        token = self._token(me, "customer", {"customer": me})
        async with ChatClient.connect(f"{self.line.ws}/chat/ws", token=token) as chat:
            self.conversation_id = chat.conversation_id
            self.say.step("chat", me, "opens the chat, signed in on the shop's site")
            self.watcher = await Watcher.open(self.line.ws, self.conversation_id,
                                              self._token("threadline-demo", "admin"))  # fmt: skip
            replies = asyncio.create_task(self._replies(chat))
            try:
                for text in (self.script.problem, self.script.come_in):
                    self.say.step("chat", me, f'"{text}"')
                    seq = await chat.say(text)
                    await within(PATIENCE, "the bot's chat reply",
                                 self._answered(seq))  # fmt: skip
                if self.code is None:
                    raise DemoStopped("the chat gave no check-in code")
            finally:
                replies.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replies
        self.say.step("chat", me, "leaves the site (the chat socket closes)")
        await self.watcher.event(lambda e: e["type"] == "leg.ended" and e["channel"] == "chat",
                                 "the end of the chat leg")  # fmt: skip

    async def _replies(self, chat: ChatClient) -> None:
        """Print what the customer's chat shows her, as it arrives."""
        while True:
            frame = await chat.events.get()
            if frame["event"] != "message.sent":
                continue
            self.say.step("chat", frame["actor"], f'"{frame.get("text", "")}"')
            card = frame.get("checkin")
            if card and card.get("status") == "valid":
                self.code = card
                store = card["store"]["name"] if card.get("store") else "any store"
                self.say.step("chat", "", f"[a check-in code (6 digits and a QR) for {store}]")

    async def _answered(self, seq: int) -> None:
        """Until the bot has answered the message at ``seq`` and gone quiet for a moment."""
        assert self.watcher is not None
        await self.watcher.event(lambda e: e["type"] == "message.sent" and e["seq"] > seq
                                 and e["actor"]["kind"] == "bot", "the bot's reply")  # fmt: skip
        quiet_since = len(self.watcher.events)
        while True:
            await asyncio.sleep(0.5)
            if len(self.watcher.events) == quiet_since:
                return
            quiet_since = len(self.watcher.events)

    # -- the call --------------------------------------------------------------------------

    async def call(self) -> None:
        """She calls; welcomed back, she answers the knowledge check and asks for a person."""
        assert self.watcher is not None
        me, line = self.script.customer_id, self.line
        record = await line.records.get(me)
        if record is None or not record.phone:
            raise DemoStopped(f"the business has no phone number for {me}")
        offers: asyncio.Queue[tuple[Desk, dict[str, Any]]] = asyncio.Queue()
        desks = []
        try:
            for person in sign_in_people(self.business):
                if person.kind == "agent":
                    token = self._token(person.subject, "agent", dict(person.claims))
                    desks.append(await Desk.sign_in(line.http, line.ws, person.subject, token,
                                                    offers))  # fmt: skip
                    queues = ", ".join(person.claims["queues"])
                    self.say.step("desk", person.subject, f"signs in, available ({queues})")
            await self._talk(record.phone, record.knowledge, offers)
        finally:
            for desk in desks:
                await desk.close()

    async def _talk(self, phone: str, knowledge: Any, offers: asyncio.Queue[Any]) -> None:
        assert self.watcher is not None
        me, line, watcher = self.script.customer_id, self.line, self.watcher
        caller = PhoneCaller(line.http, line.twilio_token, line.twilio_account)
        numbers = self.business.pack.numbers
        greeting = await (caller.dial(phone, numbers[0].number) if numbers else caller.dial(phone))
        self.say.step("voice", me, "calls from her phone; the service answers (signed webhook)")
        self.say.step("voice", "phone network", f'plays the greeting the answer names: "'
                      f'{" ".join(greeting.split())}"')  # fmt: skip
        if caller.conversation_id != self.conversation_id:
            raise DemoStopped("the call did not join her conversation")
        self.say.step("voice", "", "recognised by her number: the call joins her conversation")
        seen = await self._heard(caller, 0, 0)
        fields = list(self.business.pack.verification.knowledge.values())
        answer = knowledge.get(fields[0]) if fields else None
        if answer is None:
            raise DemoStopped("the business has no knowledge check for her")
        text = self.script.knowledge.format(answer=answer)
        await caller.say(text)
        self.say.step("voice", me, f'says "{text}" (espeak-ng speech on the media stream)')
        heard = await watcher.event(
            lambda e: e["type"] == "utterance.transcribed" and e["seq"] > seen,
            "a transcript of what she said",
        )
        self.say.step("voice", "speech-to-text", f'"{heard["payload"]["text"]}"')
        await watcher.event(lambda e: e["type"] == "identity.linked" and e["payload"]["verified"],
                            "her verification on the call")  # fmt: skip
        seen = await self._heard(caller, len(caller.replies), seen)
        await caller.say(self.script.person)
        self.say.step("voice", me, f'says "{self.script.person}"')
        desk, offer = await within(PATIENCE, "an offer to an agent", offers.get())
        seen = self._show_said("voice", seen)
        brief = offer.get("packet") or {}
        slots = ", ".join(f"{s['name']} {s['value']} (from {s['channel']})"
                          for s in brief.get("slots", []))  # fmt: skip
        self.say.step("desk", desk.agent_id, f"is offered the conversation (queue {offer['queue']},"
                      f" {brief.get('verification', '?')}; {slots or 'no details'})")  # fmt: skip
        await desk.accept(offer)
        self.say.step("desk", desk.agent_id, "accepts")
        await self._transfer(caller, desk.agent_id)

    async def _heard(self, caller: PhoneCaller, after: int, seen: int) -> int:
        """Wait for the reply after ``after`` replies to play out; print what the bot said
        on the call since seq ``seen``; the last seq shown."""
        reply = await caller.next_reply(after, timeout=PATIENCE)
        await caller.until_quiet()
        seen = self._show_said("voice", seen)
        seconds = len(reply.played_audio) / TELEPHONY_RATE
        self.say.step("voice", "", f"[the caller heard it: {seconds:.1f} s of speech]")
        return seen

    def _show_said(self, channel: str, seen: int) -> int:
        """Print what the bot or an agent said on ``channel`` after seq ``seen`` (as the log
        has it); the last seq shown."""
        assert self.watcher is not None
        for event in self.watcher.said(channel, seen):
            if event["actor"]["kind"] != "system":  # the greeting: the phone network says it
                self.say.step(channel, event["actor"]["kind"], f'"{event["payload"]["text"]}"')
            seen = event["seq"]
        return seen

    async def _transfer(self, caller: PhoneCaller, agent_id: str) -> None:
        """The phone network's part of the warm transfer, then the end of the call."""
        assert self.watcher is not None
        line = self.line
        update = await within(PATIENCE, "the warm transfer's REST call",
                              line.twilio.request_after(0, PATIENCE))  # fmt: skip
        twiml = ET.fromstring(update.form.get("Twiml", "<Response/>"))
        target = twiml.find("./Dial/*")
        if target is None:
            raise DemoStopped("the warm transfer dialled no one")
        holding = " ".join((twiml.findtext("./Say") or "").split())
        self.say.step("voice", "phone network", f"is asked (REST) to say \"{holding}\" and dial"
                      f" {agent_id}'s line {(target.text or '').strip()}")  # fmt: skip
        # The caller hears the bot out, then the call leaves the media stream for the <Dial>.
        # (Stopped mid-reply, the stream's socket has been seen to take 10 s to close.)
        await caller.until_quiet()
        await caller.hang_up()
        self.say.step("voice", "phone network", "stops the media stream; the call moves to the"
                      " <Dial>")  # fmt: skip
        whisper_url = target.attrib.get("url")
        if whisper_url:
            params = {"AccountSid": line.twilio_account, "CallSid": "CA" + uuid.uuid4().hex,
                      "CallStatus": "in-progress", "Direction": "outbound-dial"}  # fmt: skip
            answered = await signed_post(whisper_url, params, line.twilio_token)
            said = ET.fromstring(answered.text).findtext("./Say") or ""
            words = len(said.split())
            self.say.step("voice", agent_id, f"answers, hears the call's summary ({words} words)"
                          " and is bridged to the caller")  # fmt: skip
        await self.watcher.event(lambda e: e["type"] == "note.added" and e["channel"] == "voice",
                                 "the transfer's note")  # fmt: skip
        status = {"AccountSid": line.twilio_account, "CallSid": caller.sid,
                  "CallStatus": "completed"}  # fmt: skip
        ended = await signed_post(f"{line.http}/voice/twilio/status", status, line.twilio_token)
        if ended.status_code != 204:
            raise DemoStopped(f"the call-status webhook was refused ({ended.status_code})")
        self.say.step("voice", "phone network", "the call ends (status callback: completed)")
        await self.watcher.event(lambda e: e["type"] == "leg.ended" and e["channel"] == "voice",
                                 "the end of the call's leg")  # fmt: skip

    # -- the store -------------------------------------------------------------------------

    async def visit(self) -> None:
        """At the store on her code, an associate checks her in, reads the journey, resolves."""
        assert self.code is not None
        store = (self.code.get("store") or {}).get("id")
        at_store = [p for p in sign_in_people(self.business)
                    if p.kind == "associate" and p.claims["store"] == store]  # fmt: skip
        associate = at_store[0] if at_store else None
        if associate is None:
            raise DemoStopped(f"no associate works at {store}")
        where = self.business.location(store) if store else None
        token = self._token(associate.subject, "associate", dict(associate.claims))
        counter = StoreCounter(associate.subject, self.line.http, token)
        try:
            await counter.check_in(self.code["code"])
            self.say.step("in_person", associate.subject, "checks her in with her code at"
                          f" {where.name if where else store}: the visit opens")  # fmt: skip
            events, packet = await counter.journey(self.conversation_id)
            channels = sorted({e["channel"] for e in events})
            slots = ", ".join(f"{s['name']} {s['value']} (from {s['channel']})"
                              for s in packet.get("slots", []))  # fmt: skip
            self.say.step("in_person", associate.subject, f"reads the journey: {len(events)}"
                          f" events on {', '.join(channels)}; {packet.get('verification')};"
                          f" {slots}")  # fmt: skip
            await counter.resolve(self.conversation_id, self.script.outcome, self.script.note)
            self.say.step("in_person", associate.subject, f"resolves: {self.script.outcome}")
        finally:
            await counter.close()
