"""The bot in a process of its own, beside the service, on the same store.

One Python process runs one core's worth of Python, and the bot's turns are
the heaviest work the service does. With ``THREADLINE_BOT_PROCESS`` (the
default of ``threadline serve``) the service starts ``python -m
threadline.agents.worker``: it follows the log with its own relay and bus and
answers turns exactly as the in-process runtime would. The two processes speak
in frames (:mod:`threadline.store.forwarding`) over the worker's stdin and
stdout: the service hands the worker what each commit appended (or, on a store
that cannot say, pokes it), so it never waits for a poll; and on SQLite, which
takes one writer at a time, the worker reads the file itself but sends its
writes to the service, whose writer commits them with its own. The worker ends
when its stdin closes, i.e. when the service stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import SecretStr

from threadline.agents.codes import CodeSending, code_sending_from
from threadline.agents.configured import agent_for, provider_from
from threadline.agents.runtime import BotRuntime
from threadline.agents.supervision import (
    EXIT_GRACE,
    RestartPolicy,
    WorkerHealth,
    WorkerState,
    describe_exit,
)
from threadline.bus.memory import MemoryBus
from threadline.business import Business, load
from threadline.cli import tune_collector
from threadline.core.errors import ConfigurationError
from threadline.core.events import EventRecord
from threadline.core.model import ModelProvider
from threadline.core.ports import Storage
from threadline.core.tasks import stop_tasks
from threadline.engine.conversations import Conversations
from threadline.engine.outbox import PAGE, Relay
from threadline.identity.lockouts import Lockouts
from threadline.logs import configure_logging
from threadline.security.keys import key_from_settings
from threadline.security.master_key import key_provider_from_settings
from threadline.settings import PREFIX, Settings, data_dir, load_settings
from threadline.store import open_store
from threadline.store.forwarding import (
    POKE,
    READY,
    ForwardingStore,
    Message,
    Outgoing,
    answer,
    frame,
    read_frame,
    writes,
)
from threadline.store.sealing import Encrypting
from threadline.store.sqlite import SQLiteStore
from threadline.systems import Systems

log = structlog.get_logger("threadline.agents.worker")

START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0
#: Frames read from the pipe at most (a large append fits many times over).
PIPE_LIMIT: Final = 16 * 1024 * 1024
#: Bytes waiting for the worker beyond which it is poked rather than handed pages.
PIPE_BACKLOG: Final = 1024 * 1024


class WorkerStartError(ConfigurationError):
    """The bot worker process did not start (it exited, or never said it was ready)."""


class _Run:
    """One run of the worker process: its pipe, and the writes it asked for."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out = Outgoing(self._write_now)
        #: Event ids of this run's appends in flight: its pages leave them out.
        self.own: set[str] = set()

    def _write_now(self, data: bytes) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing() and self.process.returncode is None:
            stdin.write(data)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


#: Settings the worker's agent needs as the service has them: the token key (the code key
#: derives from it), the master key (it decrypts what it reads) and which notifiers send
#: codes (the agent offers only what is sent).
SHARED: Final = ("env", "token_secret", "token_key_file", "master_key", "master_key_file",
                 "notify_sms", "notify_email",
                 "sms_from", "twilio_account_sid", "twilio_auth_token", "smtp_host",
                 "smtp_port", "smtp_security", "smtp_username", "smtp_password",
                 "email_from")  # fmt: skip


def _shared_settings(settings: Settings) -> dict[str, str]:
    """:data:`SHARED` as environment variables, for the worker process (the service's own
    child, so a secret goes no further than where the service keeps it)."""
    shared = {}
    for name in SHARED:
        value = getattr(settings, name)
        if value is None:
            continue
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        shared[f"{PREFIX}{name.upper()}"] = text
    return shared


class BotWorker:
    """The service's handle on its bot process: start and supervise it, hand it the
    log, write for it, stop it.

    A worker that dies is started again with backoff (see :mod:`.supervision`);
    meanwhile the service goes on taking customer messages, and the new worker
    resumes from the bot's last checkpoint, so the turns the old one had in hand
    are delivered again (their idempotency keys make a repeat answer nothing).
    """

    def __init__(self, settings: Settings, policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self._run: _Run | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._poke_due = False
        self._stopping = False
        self._restarts = 0
        self._failures = 0
        self._last_failure: str | None = None
        self._state: WorkerState = "starting"
        self._since = datetime.now(UTC)
        self._running_since = 0.0  # time.monotonic()

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The running worker process, if one runs."""
        return self._run.process if self._run is not None else None

    @property
    def health(self) -> WorkerHealth:
        """Whether the worker runs, how often it was restarted, and why it last failed."""
        pid = self._run.process.pid if self._run is not None else None
        failures = 0 if self._healthy() else self._failures
        return WorkerHealth(self._state, pid, self._restarts, failures,
                            self._last_failure, self._since)  # fmt: skip

    def _healthy(self) -> bool:
        """Whether the worker has run long enough to count as healthy."""
        ran = time.monotonic() - self._running_since
        return self._state == "running" and ran >= self.policy.healthy_after

    def _enter(self, state: WorkerState) -> None:
        self._state, self._since = state, datetime.now(UTC)
        if state == "running":
            self._running_since = time.monotonic()

    async def start(self, store: Storage, appended: Callable[[], None]) -> None:
        """Start the worker and supervise it; its writes go to ``store``, and
        ``appended()`` runs after each append the worker made. Raises
        :class:`WorkerStartError` when the first start fails."""
        run = await self._spawn(store, appended)
        self._supervisor = asyncio.create_task(
            self._supervise(run, store, appended), name="bot-worker"
        )

    async def _spawn(self, store: Storage, appended: Callable[[], None]) -> _Run:
        """A new worker process, once it says it is ready; it becomes the current run."""
        env = {**os.environ, **_shared_settings(self.settings),
               "THREADLINE_STORE": self.settings.store,
               "THREADLINE_SNAPSHOT_EVERY": str(self.settings.snapshot_every),
               "THREADLINE_DATA_DIR": str(data_dir(self.settings).resolve())}  # fmt: skip
        if self.settings.business is not None:
            env["THREADLINE_BUSINESS"] = str(self.settings.business.resolve())
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "threadline.agents.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            limit=PIPE_LIMIT,
        )  # fmt: skip
        run = _Run(process)
        try:
            assert process.stdout is not None
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    first = await read_frame(process.stdout)
            except TimeoutError:
                first = None
            if first != ("ready",):
                reason = "no ready signal" if first is None else f"said {first[0]!r} first"
                raise WorkerStartError(f"the bot worker process did not start ({reason},"
                                       f" {describe_exit(process.returncode)})")  # fmt: skip
        except BaseException:
            await asyncio.shield(run.kill())  # never leave a half-started worker behind
            raise
        self._run = run
        self._enter("running")
        return run

    async def _supervise(self, run: _Run, store: Storage, appended: Callable[[], None]) -> None:
        """Serve ``run`` until its process ends; then, unless stopping, start another."""
        while True:
            ended = await self._serve(run, store, appended)
            if self._stopping:
                return
            if self._healthy():
                self._failures = 0
            self._run = None
            self._failures += 1
            self._last_failure = ended
            self._enter("restarting")
            delay = self.policy.delay(self._failures)
            log.error("the bot worker process died; restarting it", exit=ended,
                      failures=self._failures, restart_in_s=delay)  # fmt: skip
            while True:
                await asyncio.sleep(self.policy.delay(self._failures))
                self._enter("starting")
                try:
                    run = await self._spawn(store, appended)
                except Exception as exc:  # counted, logged and tried again: never silent
                    self._failures += 1
                    self._last_failure = str(exc) or type(exc).__name__
                    self._enter("restarting")
                    log.error("the bot worker process did not start again", reason=str(exc),
                              failures=self._failures,
                              retry_in_s=self.policy.delay(self._failures))  # fmt: skip
                    continue
                self._restarts += 1
                log.warning("the bot worker process is back", pid=run.process.pid,
                            restarts=self._restarts)  # fmt: skip
                break

    async def _serve(self, run: _Run, store: Storage, appended: Callable[[], None]) -> str:
        """Take ``run``'s writes until its pipe closes; how its process ended."""
        process = run.process
        assert process.stdout is not None
        ops = writes(store)
        try:
            while (message := await read_frame(process.stdout)) is not None:
                if message[0] == "call":
                    own = _event_ids(message)
                    run.own.update(own)
                    # One task per write, so writes from many conversations share a commit.
                    task = asyncio.create_task(self._answer(run, ops, message, appended, own))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                elif message[0] == "poke":  # the worker appended to a store it writes itself
                    appended()
        except Exception:  # a frame that makes no sense: this run cannot be trusted
            log.exception("the bot worker process sent what could not be read")
            await run.kill()
        try:
            async with asyncio.timeout(EXIT_GRACE):
                await process.wait()
        except TimeoutError:  # its pipe closed but it lingers
            await run.kill()
        if process.stdin is not None:
            process.stdin.close()
        return describe_exit(process.returncode)

    async def _answer(
        self,
        run: _Run,
        ops: dict[str, Any],
        message: Message,
        appended: Callable[[], None],
        own: Sequence[str],
    ) -> None:
        try:
            reply, wrote = await answer(ops, message)
        finally:
            run.own.difference_update(own)  # a repeat appends nothing the page could skip
        run.out.send(reply)  # to the run that asked: a dead one's answer goes nowhere
        if wrote:
            appended()

    def feed(self, after: int, page: Sequence[EventRecord]) -> None:
        """Hand the worker what the store just committed (all events after ``after``), so
        it publishes them without reading them back; it reads itself if they leave a gap,
        as when pages pile up unread in the pipe and a poke goes instead, or when no
        worker runs (the next one reads on from its checkpoint)."""
        run = self._run
        if run is None or run.process.stdin is None:
            return
        if run.process.stdin.transport.get_write_buffer_size() > PIPE_BACKLOG:
            self.poke()
            return
        run.out.send(page_frame(after, page, run.own))

    def forget(self, owners: Collection[str], conversation_ids: Collection[str]) -> None:
        """Tell the worker that a customer was erased: it drops their cached data keys and
        the conversations it keeps in memory (a worker started later keeps none)."""
        if self._run is not None:
            self._run.out.send(frame(("forget", tuple(owners), tuple(conversation_ids))))

    def reload(self) -> None:
        """Ask the worker to read the business pack again (the service has checked it); a
        worker started later reads the pack as it is then."""
        if self._run is not None:
            self._run.out.send(frame(("reload",)))

    def poke(self) -> None:
        """Something was appended: tell the worker to look (once per turn of the loop)."""
        if not self._poke_due:
            self._poke_due = True
            asyncio.get_running_loop().call_soon(self._send_poke)

    def _send_poke(self) -> None:
        self._poke_due = False
        if self._run is not None:
            self._run.out.send(POKE)

    async def stop(self) -> None:
        """Stop supervising, close the worker's pipe and let it finish its last writes."""
        self._stopping = True
        supervisor, run = self._supervisor, self._run
        if supervisor is not None and run is None:
            supervisor.cancel()  # between runs (a start in progress kills its process)
        if run is not None and run.process.stdin is not None:
            run.out.flush()
            run.process.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                if run is not None:
                    await run.process.wait()
                # The worker's last writes (its checkpoint) are still in the pipe: do them.
                if supervisor is not None and run is not None:
                    await asyncio.shield(supervisor)
                if self._calls:
                    await asyncio.gather(*self._calls)
        except TimeoutError:
            if run is not None:
                await run.kill()
        await stop_tasks(t for t in (supervisor, *self._calls) if t is not None)
        self._run = None
        self._enter("stopped")


def page_frame(after: int, page: Sequence[EventRecord], own: Collection[str]) -> bytes:
    """The ``page`` frame for what a commit appended after ``after``, less the events in
    ``own`` (the worker's appends in flight, which it holds already), through the page's
    last position. A full page goes whole: the worker reads on after it."""
    through = page[-1].position if page else after
    if own and len(page) < PAGE:
        rows = tuple(tuple(r) for r in page if r.event_id not in own)
    else:
        rows = tuple(tuple(r) for r in page)
    return frame(("page", after, rows, through))


def _event_ids(message: Message) -> tuple[str, ...]:
    """The ids of the events a ``call`` message appends (none for other writes)."""
    _, _, op, args = message
    if op != "append":
        return ()
    return tuple(row[0] for row in args[1])


async def serve_bot(settings: Settings) -> None:
    """Run the bot on ``settings.store`` until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The pipe to the service is ours alone: logs and prints go to stderr instead.
    pipe = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)

    def write(data: bytes) -> None:
        if not transport.is_closing():
            transport.write(data)

    outgoing = Outgoing(write, with_answers=False)
    send = outgoing.send

    opened = await open_store(settings.store, keys=key_provider_from_settings(settings))
    # SQLite takes one writer per file: the service's. Other stores take writes from anyone.
    forwarding = ForwardingStore(opened, send) if isinstance(opened, SQLiteStore) else None
    store: Storage = forwarding or opened
    bus = MemoryBus(store)
    relay = Relay(store, bus, store)
    # The worker's own appends wake no relay here: its hot states hold them already and the
    # bot has nothing to answer in them, so they are read with the next customer message.
    # The service must hear of them, though: it wrote them itself, or it is poked.
    on_append = None if forwarding is not None else lambda: send(POKE)
    conversations = Conversations(store, snapshot_every=settings.snapshot_every,
                                  on_append=on_append)  # fmt: skip
    systems = Systems.open(_business(settings), data_dir(settings))
    # The same code key as the service's: it sends the codes, this process checks them.
    codes = code_sending_from(settings, key_from_settings(settings))
    lockouts = Lockouts(store)
    model = provider_from(settings, systems.business)
    runtime = BotRuntime(conversations, agent_for(systems, model, codes=codes, lockouts=lockouts,
                                                  conversations=conversations))  # fmt: skip
    await runtime.start(bus)
    await relay.start()
    send(READY)
    try:
        while (message := await read_frame(reader)) is not None:
            if message[0] == "result" and forwarding is not None:
                forwarding.settle(message)
            elif message[0] == "page":
                _, after, rows, through = message
                relay.feed_through(after, [EventRecord._make(row) for row in rows], through)
            elif message[0] == "poke":
                relay.poke()
            elif message[0] == "reload":
                systems = _reloaded(settings, systems, runtime, codes, lockouts, model,
                                    conversations)  # fmt: skip
            elif message[0] == "forget":
                _, owners, conversation_ids = message
                _forget(opened, conversations, owners, conversation_ids)
    finally:
        await systems.close()
        if model is not None:
            await model.close()
        if forwarding is not None:
            forwarding.detach()  # the service closed our stdin: its answers cannot arrive
        await relay.stop()
        await bus.close()  # its last checkpoint still reaches the service, unanswered
        await store.close()
        outgoing.flush()
        transport.close()


def _forget(
    store: Storage,
    conversations: Conversations,
    owners: Collection[str],
    conversation_ids: Collection[str],
) -> None:
    """A customer was erased: drop their keys and conversations from memory."""
    if isinstance(store, Encrypting) and store.sealer is not None:
        store.sealer.forget(owners)
    for conversation_id in conversation_ids:
        conversations.forget(conversation_id)


def _business(settings: Settings) -> Business:
    if settings.business is None:
        raise ConfigurationError("the bot worker needs THREADLINE_BUSINESS")
    return load(settings.business)


def _reloaded(
    settings: Settings,
    systems: Systems,
    runtime: BotRuntime,
    codes: CodeSending | None,
    lockouts: Lockouts,
    model: ModelProvider | None,
    conversations: Conversations,
) -> Systems:
    """The pack read again: a valid one answers the next turns, an invalid one is logged and
    the running one stays (the service checked it before asking)."""
    try:
        business = _business(settings)
    except ConfigurationError as exc:
        log.error("business pack not reloaded", error=str(exc))
        return systems
    systems.use(business)
    runtime.replace_agent(agent_for(systems, model, codes=codes, lockouts=lockouts,
                                    conversations=conversations))  # fmt: skip
    return systems


def main() -> None:
    settings = load_settings()
    configure_logging(settings.env)
    tune_collector()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            # The loop uvicorn serves on when installed: cheaper tasks, futures and pipes.
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            asyncio.run(serve_bot(settings))
        else:
            uvloop.run(serve_bot(settings))


if __name__ == "__main__":
    main()
