"""A run's event log in Firestore, and emitting events (log first, then Pub/Sub).

Layout (shared with ws_bridge): ``runs/{run_id}`` holds {run_id, thread_id, user_id, status, last_seq,
created_at, updated_at, expires_at}; ``runs/{run_id}/events/{seq:010d}`` holds the AgentEvent fields (ts as
an ISO string; an array inside an array as {"_netra_array": [...]}, which Firestore requires, see
shared.firestore.encode_nested_arrays) plus user_id and expires_at. The event document is *created*
(precondition: absent) in the same batch that moves ``last_seq``, so two workers can never both write sequence
N: the loser gets SeqConflict and stops. The log is the source of truth for the sequence; a resumed run
continues from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.agent import pubsub
from shared.errors import NetraError
from shared.firestore import (
    bounded,
    collection_name,
    decode_nested_arrays,
    encode_nested_arrays,
    field_filter,
    get_client,
    ttl_expiry,
)
from shared.models.events import TERMINAL_EVENT_TYPES, AgentEvent

RUNS = "runs"
TIMEOUT_S = 10.0  # per Firestore call: an unreachable emulator or backend fails the call, not the process
EVENTS = "events"
TERMINAL_STATUS = {"agent_completed": "completed", "agent_error": "failed", "run_cancelled": "cancelled"}


class SeqConflict(NetraError):
    """Another writer already holds this sequence number: this worker no longer owns the run."""


@dataclass(frozen=True)
class RunRef:
    run_id: str
    thread_id: str
    user_id: str


def _run_doc(run_id: str) -> Any:
    return get_client().collection(collection_name(RUNS)).document(run_id)


def event_doc_id(seq: int) -> str:
    return f"{seq:010d}"


def event_to_doc(event: AgentEvent, user_id: str, ttl_s: float) -> dict[str, Any]:
    doc = encode_nested_arrays(event.model_dump(mode="json"))  # ts as an ISO string; no array in an array
    doc["user_id"] = user_id
    doc["expires_at"] = ttl_expiry(ttl_s)
    return doc


def doc_to_event(doc: dict[str, Any]) -> AgentEvent:
    return AgentEvent.model_validate(
        decode_nested_arrays({k: v for k, v in doc.items() if k not in ("user_id", "expires_at")})
    )


class EventLog:
    def __init__(self, project: str, ttl_days: int) -> None:
        self.project = project
        self.ttl_s = ttl_days * 86400.0

    def run_state(self, run_id: str) -> dict[str, Any] | None:
        snap = _run_doc(run_id).get(**bounded(TIMEOUT_S))
        return snap.to_dict() if snap.exists else None

    def append(self, run: RunRef, event: AgentEvent) -> None:
        """Write the event and move last_seq, atomically; SeqConflict if the seq is taken."""
        from google.api_core import exceptions as gexc

        run_ref = _run_doc(run.run_id)
        now = datetime.now(UTC)
        status = TERMINAL_STATUS.get(event.type, "running")
        batch = get_client().batch()
        batch.create(
            run_ref.collection(EVENTS).document(event_doc_id(event.seq)), event_to_doc(event, run.user_id, self.ttl_s)
        )
        state: dict[str, Any] = {
            "run_id": run.run_id,
            "thread_id": run.thread_id,
            "user_id": run.user_id,
            "status": status,
            "last_seq": event.seq,
            "updated_at": now,
            "expires_at": ttl_expiry(self.ttl_s),
        }
        if event.seq == 1:
            state["created_at"] = now
        batch.set(run_ref, state, merge=True)
        try:
            batch.commit(**bounded(TIMEOUT_S))
        except (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition) as exc:
            # The client retries a commit whose answer was lost; its second try then finds our own document.
            existing = run_ref.collection(EVENTS).document(event_doc_id(event.seq)).get(**bounded(TIMEOUT_S))
            mine = event.model_dump(mode="json")
            if existing.exists and all(existing.get(k) == mine[k] for k in ("ts", "type", "agent_name")):
                batch = get_client().batch()
                batch.set(run_ref, state, merge=True)
                batch.commit(**bounded(TIMEOUT_S))
                return
            raise SeqConflict(f"seq {event.seq} of run {run.run_id} already written: {type(exc).__name__}") from None

    def publish(self, run: RunRef, event: AgentEvent) -> None:
        pubsub.publish_event(self.project, event, run.user_id)

    def emit(self, run: RunRef, event: AgentEvent) -> None:
        """Log, then publish. A crash between the two is repaired by :meth:`republish_last` on resume."""
        self.append(run, event)
        self.publish(run, event)

    def events(self, run_id: str, after_seq: int = 0, limit: int = 500) -> list[AgentEvent]:
        query = (
            _run_doc(run_id)
            .collection(EVENTS)
            .where(filter=field_filter("seq", ">", after_seq))
            .order_by("seq")
            .limit(limit)
        )
        return [doc_to_event(snap.to_dict()) for snap in query.stream(**bounded(TIMEOUT_S))]

    def last_event(self, run_id: str) -> AgentEvent | None:
        state = self.run_state(run_id)
        if not state or not state.get("last_seq"):
            return None
        snap = (
            _run_doc(run_id).collection(EVENTS).document(event_doc_id(int(state["last_seq"]))).get(**bounded(TIMEOUT_S))
        )
        return doc_to_event(snap.to_dict()) if snap.exists else None

    def republish_last(self, run: RunRef) -> AgentEvent | None:
        """Publish the newest logged event again: its publish may have been lost with a dead worker.
        Consumers deduplicate on (run_id, seq), so a second copy is harmless."""
        event = self.last_event(run.run_id)
        if event is not None:
            self.publish(run, event)
        return event


def is_terminal(event: AgentEvent | None) -> bool:
    return event is not None and event.type in TERMINAL_EVENT_TYPES
