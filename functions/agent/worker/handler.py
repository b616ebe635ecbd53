"""One delivery of ``agent-requests``: at least once in, exactly once in effect per run id.

Ownership of a run is a PostgreSQL session advisory lock held on a dedicated connection for the whole
execution: it is released by the database the moment the holder's connection dies, so a redelivery after a
worker crash can take the run over at once, while a duplicate delivery of a run that a live worker holds is
acknowledged and does nothing. ``runs.attempt`` fences the outcome (only the current attempt may finish the
run) and the event log's create-if-absent fences sequence numbers.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.agent.eventlog import EventLog, RunRef
from functions.agent.pipeline_api import FinalAnswer, LLMMessage, Pipeline, RunCancelled
from functions.agent.store import runs as run_store
from functions.agent.store import threads as thread_store
from functions.agent.terminal import ensure_terminal_event, terminal_event_for
from functions.agent.worker.context import LostOwnership, RunTimedOut, WorkerRunContext
from shared.db.database import Database, Tx
from shared.errors import NetraError
from shared.models.events import AgentRequest
from shared.service import require_database
from shared.timeout import CallTimedOut, call_with_timeout

if TYPE_CHECKING:
    from functions.agent.settings import AgentSettings
    from shared.startup import StartupManager

log = logging.getLogger("agent.worker")


class RetryLater(NetraError):
    """Nack this delivery: Pub/Sub redelivers it with backoff."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# What a user reads about a failed run: fixed per error_code. Exception texts stay in the worker's log.
PIPELINE_FAILED = "the analysis failed unexpectedly; the details are in the service log"


class RunEnd(StrEnum):
    """How this attempt's execution ended. The first three are the run's final status (runs.status); LOST means
    another attempt owns the run now and this one records nothing."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    LOST = "lost"


@dataclass
class Outcome:
    status: RunEnd
    answer: FinalAnswer | None = None
    error_code: str | None = None
    error_message: str | None = None


def parse_request(data: Any) -> AgentRequest | None:
    """The AgentRequest inside a Pub/Sub CloudEvent's data; None (logged) for a message no retry can fix."""
    try:
        message = data["message"]
        return AgentRequest.model_validate_json(base64.b64decode(message["data"]))
    except Exception as exc:
        log.error("dropping malformed agent request", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
        return None


def is_infrastructure_error(exc: BaseException) -> bool:
    """Failures of our own dependencies: retry the delivery (the run resumes) instead of failing the run."""
    from functions.agent.pubsub import PublishFailed
    from shared.errors import ServiceUnavailable

    if isinstance(exc, PublishFailed | ServiceUnavailable | ConnectionError):
        return True
    try:
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.GoogleAPICallError | gexc.RetryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    import pg8000.exceptions

    return isinstance(exc, pg8000.exceptions.InterfaceError)


class LockConnections:
    """Connections a run lock was held on, kept for the next run once their session holds no lock.

    Opening one (TCP, TLS through the connector, authentication, the keepalive settings) was most of the
    ~35 ms between a push's arrival and its run's claim (docs/PERFORMANCE.md, issue 18). Hand-written rather
    than the Database pool: these connections are autocommit, hold a session lock for a whole run, and must
    never be lent to a transaction."""

    MAX_IDLE_S = 60.0  # older ones are closed rather than trusted: a reused dead socket costs a read timeout

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[tuple[Any, float]] = []
        self._guard = threading.Lock()

    def take(self) -> Any:
        """An idle connection no older than MAX_IDLE_S, or None."""
        with self._guard:
            while self._idle:
                conn, since = self._idle.pop()
                if time.monotonic() - since <= self.MAX_IDLE_S:
                    return conn
                _close(conn)
        return None

    def give_back(self, conn: Any) -> None:
        """Keep ``conn`` (its session must hold no advisory lock), or close it when enough are kept."""
        with self._guard:
            if len(self._idle) < self.size:
                self._idle.append((conn, time.monotonic()))
                return
        _close(conn)


def _close(conn: Any) -> None:
    try:
        conn.close()  # ends the session, which releases any lock it holds
    except Exception:  # noqa: S110 - a dead connection has released its locks already
        pass


class RunLock:
    """A session advisory lock on the run id, on its own connection (outside the pool; reused across runs
    through :class:`LockConnections`)."""

    def __init__(self, db: Database, run_id: str, spares: LockConnections | None = None) -> None:
        self.db = db
        self.key = int.from_bytes(uuid.UUID(run_id).bytes[:8], "big", signed=True)
        self.spares = spares
        self.conn: Any = None
        self._stop: threading.Event | None = None
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> bool:
        conn = self.spares.take() if self.spares else None
        if conn is not None:
            try:
                cur = conn.cursor()
                cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                got = bool(cur.fetchone()[0])
            except Exception:  # a kept connection that died while idle: open a new one
                _close(conn)
                conn = None
        if conn is None:
            conn = self.db.open()
            conn.autocommit = True
            cur = conn.cursor()
            # A holder that vanishes without closing its socket is noticed within about a minute, not hours. The
            # settings (for the session) go in the same statement as the lock: one round trip instead of four.
            cur.execute(
                "SELECT set_config('tcp_keepalives_idle', '20', false),"
                " set_config('tcp_keepalives_interval', '5', false),"
                " set_config('tcp_keepalives_count', '4', false), pg_try_advisory_lock(%s)",
                (self.key,),
            )
            got = bool(cur.fetchone()[-1])
        if got:
            self.conn = conn
            return True
        self._keep_or_close(conn, holds_lock=False)
        return False

    def keep_alive(self, run_id: str, attempt: int, interval_s: float, on_lost: Callable[[], None]) -> None:
        """Refresh the run's claim every ``interval_s`` on the lock's connection while the run executes (a long
        LLM call emits nothing). If that connection fails the lock is gone with it: ``on_lost`` stops the run,
        since another worker may take it over."""
        conn = self.conn
        stop = self._stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    cur = conn.cursor()
                    cur.execute(
                        "UPDATE runs SET claimed_at = now() WHERE id = %s AND attempt = %s AND status = 'running'",
                        (run_id, attempt),
                    )
                except Exception as exc:
                    if not stop.is_set():
                        log.warning(
                            "run lock connection lost; stopping the run",
                            extra={"run_id": run_id, "reason": type(exc).__name__},
                        )
                        on_lost()
                    return

        self._beat = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{run_id[:8]}")
        self._beat.start()

    def release(self, keep: bool = True) -> None:
        """Release the lock; the connection is kept for the next run when ``keep`` (the run ended without an
        error: after one, the connection may be what failed, and a dead socket would cost a read timeout)."""
        if self._stop is not None:
            self._stop.set()
        if self.conn is not None:
            conn, self.conn = self.conn, None
            if self._beat is not None:
                # The heartbeat shares the connection (pg8000's are not thread-safe): kept only once it stopped.
                self._beat.join(5.0)
                keep = keep and not self._beat.is_alive()
            self._keep_or_close(conn, holds_lock=True, usable=keep)

    def _keep_or_close(self, conn: Any, holds_lock: bool, usable: bool = True) -> None:
        if self.spares is None or not usable:
            _close(conn)
            return
        try:
            if holds_lock:
                conn.cursor().execute("SELECT pg_advisory_unlock_all()")
        except Exception:
            _close(conn)
            return
        self.spares.give_back(conn)


class Worker:
    def __init__(self, settings: AgentSettings, manager: StartupManager) -> None:
        self.settings = settings
        self.manager = manager
        self.eventlog = EventLog(settings.google_cloud_project, settings.event_ttl_days)
        self.slots = threading.BoundedSemaphore(settings.max_concurrent_runs)
        self.lock_connections = LockConnections(settings.max_concurrent_runs)
        self._worker_id: str | None = None

    @property
    def worker_id(self) -> str:
        # Computed after the fork (pid of the process that serves).
        if self._worker_id is None:
            self._worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return self._worker_id

    # -- a delivery --------------------------------------------------------------------------------------
    def handle(self, data: Any) -> None:
        request = parse_request(data)
        if request is None:
            return
        # A short wait absorbs a burst on this instance; past it Pub/Sub redelivers with the subscription's backoff.
        if not self.slots.acquire(timeout=self.settings.run_slot_wait_s):
            log.info("worker busy; delivery refused for redelivery", extra={"run_id": request.run_id})
            raise RetryLater(429, f"worker busy ({self.settings.max_concurrent_runs} runs in progress)")
        try:
            self.process(request)
        except RetryLater:
            raise
        except Exception as exc:
            if is_infrastructure_error(exc):
                log.warning(
                    "delivery failed on a dependency; Pub/Sub will redeliver",
                    extra={"run_id": request.run_id, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
                )
                raise RetryLater(503, str(exc)) from None
            raise
        finally:
            self.slots.release()

    def _db(self) -> Database:
        return require_database(self.manager, self.settings.startup_wait_seconds)

    def process(self, request: AgentRequest) -> None:
        db = self._db()
        self.manager.require("firestore", self.settings.startup_wait_seconds)
        self.manager.require("pubsub", self.settings.startup_wait_seconds)
        row = self._wait_for_run(db, request.run_id)
        if row is None:
            # The API publishes inside its transaction: a run that never appears was rolled back.
            log.warning("request for an unknown run dropped", extra={"run_id": request.run_id})
            return
        if row["user_id"] != request.user_id or row["thread_id"] != request.thread_id:
            log.error("request does not match its run; dropped", extra={"run_id": request.run_id})
            return
        if row["status"] in run_store.TERMINAL:
            ensure_terminal_event(db, self.eventlog, row)
            return
        lock = RunLock(db, request.run_id, self.lock_connections)
        if not lock.try_acquire():
            fresh = run_store.get_run(db, request.run_id)
            if (
                fresh
                and fresh["status"] == "running"
                and fresh["claimed_at"] is not None
                and (datetime.now(UTC) - fresh["claimed_at"]).total_seconds() > self.settings.run_lease_s
            ):
                raise RetryLater(503, "run held by a worker that stopped heart-beating; retry after it is released")
            log.info("duplicate delivery of a run in progress acknowledged", extra={"run_id": request.run_id})
            return
        finished = False
        try:
            self.execute(db, request, lock)
            finished = True
        finally:
            lock.release(keep=finished)

    @staticmethod
    def _wait_for_run(db: Database, run_id: str, budget_s: float = 3.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + budget_s
        delay = 0.01
        while True:
            row = run_store.get_run(db, run_id)
            if row is not None or time.monotonic() >= deadline:
                return row
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    # -- one execution (under the lock) -----------------------------------------------------------------
    def execute(self, db: Database, request: AgentRequest, lock: RunLock) -> None:
        # On the lock's autocommit connection: the claim is one statement, so one round trip.
        claimed = run_store.claim(Tx(lock.conn), request.run_id, self.worker_id)
        if claimed is None:
            row = run_store.get_run(db, request.run_id)
            if row is not None:
                ensure_terminal_event(db, self.eventlog, row)
            return
        ref = RunRef(claimed["id"], claimed["thread_id"], claimed["user_id"])
        last_seq = self._logged_seq(claimed)
        resumed = claimed["previous_status"] == "running"
        if resumed and last_seq:
            self.eventlog.republish_last(ref)
        budget = self.settings.run_time_budget_s
        remaining = budget - (datetime.now(UTC) - claimed["created_at"]).total_seconds()
        from functions.agent.llm.chain import get_chain

        ctx = WorkerRunContext(
            run=ref,
            message="",  # read after agent_started (see _run): the first event waits for neither read
            history=[],
            db=db,
            eventlog=self.eventlog,
            chain=get_chain(self.settings),
            attempt=claimed["attempt"],
            last_seq=last_seq,
            deadline=time.monotonic() + remaining,
        )
        lock.keep_alive(ref.run_id, claimed["attempt"], self.settings.run_lease_s / 3, ctx.lose)
        log.info(
            "run claimed",
            extra={"run_id": ref.run_id, "attempt": claimed["attempt"], "resumed": resumed, "last_seq": last_seq},
        )
        if remaining <= 0:
            outcome = Outcome(
                RunEnd.FAILED,
                error_code="time_budget_exceeded",
                error_message=f"the run waited longer than its {budget:g}s time budget before it could start",
            )
        else:
            outcome = self._run(ctx, claimed, resumed, last_seq, remaining)
        self.finalize(db, ctx, outcome)

    def _logged_seq(self, claimed: dict[str, Any]) -> int:
        """The run's last logged sequence number, where its next event continues. A run claimed for the first
        time (it was queued, this is attempt 1) has no event in the log: no worker ever owned it, and nothing
        else writes a queued run's events (the SQL row's last_seq mirror agrees). Skipping the Firestore read
        then saves a round trip before the first event; any other claim reads the log, the source of truth."""
        if claimed["previous_status"] == "queued" and claimed["attempt"] == 1 and not claimed["last_seq"]:
            return 0
        state = self.eventlog.run_state(claimed["id"]) or {}
        return int(state.get("last_seq") or 0)

    def _run(
        self, ctx: WorkerRunContext, claimed: dict[str, Any], resumed: bool, last_seq: int, remaining: float
    ) -> Outcome:
        try:
            from functions.agent.worker.loader import load_pipeline

            name, pipeline = load_pipeline(self.settings.agent_pipeline)
        except Exception:
            log.exception("pipeline could not be loaded", extra={"run_id": ctx.run_id})
            return Outcome(
                RunEnd.FAILED, error_code="pipeline_unavailable", error_message="the agent pipeline could not be loaded"
            )
        started: dict[str, Any] = {"attempt": claimed["attempt"], "resumed": resumed, "pipeline": name}
        if resumed:
            started["resumed_after_seq"] = last_seq
            started["note"] = "the previous worker stopped; the run starts over and continues the same sequence"
        try:
            ctx.emit("agent_started", "supervisor", started)
        except LostOwnership:
            return Outcome(RunEnd.LOST)
        ctx.message = run_store.message_content(ctx.db, claimed["message_id"]) or ""
        ctx.history = [
            LLMMessage(r["role"], r["content"])
            for r in run_store.history(ctx.db, ctx.thread_id, claimed["message_id"], self.settings.history_messages)
        ]
        return self._run_pipeline(pipeline, ctx, remaining)

    def _run_pipeline(self, pipeline: Pipeline, ctx: WorkerRunContext, remaining: float) -> Outcome:
        # A thread of its own so that a pipeline stuck in a tool or a call cannot outlive the time budget.
        budget = self.settings.run_time_budget_s
        try:
            answer = call_with_timeout(
                lambda: pipeline(ctx), remaining, f"run {ctx.run_id}", thread_name=f"run-{ctx.run_id[:8]}"
            )
        except CallTimedOut:
            ctx.close()
            return Outcome(
                RunEnd.FAILED,
                error_code="time_budget_exceeded",
                error_message=f"the run did not finish within its {budget:g}s time budget",
            )
        except BaseException as exc:  # classified below, as before; anything unknown is raised again
            error = exc
        else:
            if isinstance(answer, str):
                answer = FinalAnswer(content=answer)
            if not isinstance(answer, FinalAnswer):
                log.error(
                    "pipeline returned no FinalAnswer", extra={"run_id": ctx.run_id, "type": type(answer).__name__}
                )
                return Outcome(RunEnd.FAILED, error_code="pipeline_error", error_message=PIPELINE_FAILED)
            return Outcome(RunEnd.COMPLETED, answer=answer)
        from functions.agent.llm.chain import LLMUnavailable

        if isinstance(error, RunCancelled):
            return Outcome(RunEnd.CANCELLED, error_message=str(error) or "cancelled by the user")
        if isinstance(error, RunTimedOut):
            return Outcome(
                RunEnd.FAILED,
                error_code="time_budget_exceeded",
                error_message=f"the run did not finish within its {budget:g}s time budget",
            )
        if isinstance(error, LostOwnership):
            return Outcome(RunEnd.LOST, error_message=str(error))
        if isinstance(error, LLMUnavailable):
            # The providers' own answers (which may quote the request, an account or a key prefix) go to the
            # log; the user sees a stable code and message.
            log.warning("no language model could answer", extra={"run_id": ctx.run_id, "reason": str(error)[:2000]})
            return Outcome(
                RunEnd.FAILED,
                error_code="llm_unavailable",
                error_message="no language model could answer right now; try again in a few minutes",
            )
        if is_infrastructure_error(error) or not isinstance(error, Exception):
            ctx.close()
            raise error
        log.error("pipeline failed", exc_info=error, extra={"run_id": ctx.run_id})
        return Outcome(RunEnd.FAILED, error_code="pipeline_error", error_message=PIPELINE_FAILED)

    # -- the outcome, committed before the terminal event -----------------------------------------------
    def finalize(self, db: Database, ctx: WorkerRunContext, outcome: Outcome) -> None:
        ctx.close()
        if outcome.status is RunEnd.LOST:
            log.warning(
                "run taken over by another attempt; this one stops",
                extra={"run_id": ctx.run_id, "reason": outcome.error_message},
            )
            return
        reserved = ctx.last_seq + 1
        with db.transaction() as tx:
            if outcome.status is RunEnd.COMPLETED:
                assert outcome.answer is not None
                thread_store.insert_answer(
                    tx, ctx.thread_id, ctx.user_id, ctx.run_id, outcome.answer.content, outcome.answer.metadata
                )
            row = run_store.finish(
                tx,
                ctx.run_id,
                ctx.attempt,
                outcome.status.value,
                reserved,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
            )
            if row is None:
                tx.conn.rollback()
            else:
                tx.execute("UPDATE threads SET updated_at = now() WHERE id = %s", [ctx.thread_id])
        if row is None:
            if run_store.get_run(db, ctx.run_id) is None:
                # Deleted with its thread: still end the stream, so a watching client stops waiting.
                ctx.emit_final("run_cancelled", "supervisor", {"reason": "the thread was deleted"})
            else:
                log.warning("run finished by another attempt; outcome discarded", extra={"run_id": ctx.run_id})
            return
        event = terminal_event_for(db, row, reserved)
        ctx.emit_final(event.type, event.agent_name, event.data)
        log.info(
            "run finished",
            extra={"run_id": ctx.run_id, "status": row["status"], "seq": reserved, "cost_usd": float(row["cost_usd"])},
        )
