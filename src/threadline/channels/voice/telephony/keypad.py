"""The default call handler: what the caller keys in becomes their message.

Digits are collected until ``#`` or a pause, then recorded as one
``message.received`` on the voice leg ("5120" for an order number, "2" for
a menu choice), which the bot answers like any other message. Audio and
marks are ignored: the speech pipeline is another handler behind the same
:class:`~threadline.channels.voice.media.CallHandler` protocol.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from threadline.channels.voice.media import Call, CallHandler, CallSink, HandlerFactory
from threadline.channels.voice.telephony.calls import VoiceCalls
from threadline.core.errors import ThreadlineError

log = structlog.get_logger("threadline.voice.keypad")

#: Seconds after the last digit before the digits are taken as entered.
DIGIT_PAUSE: Final = 2.0
END_KEY: Final = "#"


class Keypad(CallHandler):
    """Records keyed-in digits as the caller's messages."""

    def __init__(self, calls: VoiceCalls, pause: float = DIGIT_PAUSE) -> None:
        self.calls = calls
        self.pause = pause
        self.call: Call | None = None
        self.entries = 0
        self._digits: list[str] = []
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def on_start(self, call: Call) -> None:
        self.call = call

    async def on_audio(self, frame: bytes, timestamp_ms: int) -> None:
        return

    async def on_mark(self, name: str) -> None:
        return

    async def on_dtmf(self, digit: str) -> None:
        self._cancel_timer()
        if digit == END_KEY:
            await self._flush()
            return
        self._digits.append(digit)
        self._timer = asyncio.create_task(self._flush_after_pause())

    async def on_stop(self) -> None:
        self._cancel_timer()
        await self._flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    async def _flush_after_pause(self) -> None:
        await asyncio.sleep(self.pause)
        self._timer = None  # from here on a new digit must not cancel the recording
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            if not self._digits or self.call is None:
                return
            digits, self._digits = "".join(self._digits), []
            self.entries += 1
            call = self.call
            key = f"{call.stream_id}:keypad:{self.entries}"
            try:
                await self.calls.keyed_in(
                    call.call_id, call.conversation_id, call.customer_id, digits, key
                )
            except ThreadlineError as exc:
                # The call goes on; the bot simply did not get these digits.
                log.warning("keyed-in digits not recorded", call_id=call.call_id, reason=str(exc))


def keypad(calls: VoiceCalls, pause: float = DIGIT_PAUSE) -> HandlerFactory:
    """A factory of :class:`Keypad` handlers (the default until speech is plugged in)."""

    def make(sink: CallSink) -> CallHandler:
        return Keypad(calls, pause)

    return make
