"""The Firestore event log against the emulator: layout, the sequence fence, idempotent retries, reads."""

from __future__ import annotations

from typing import Any

import pytest

from functions.agent.eventlog import EventLog, RunRef, SeqConflict
from shared.models.events import AgentEvent

RUN = RunRef(
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
)


def _event(seq: int, type: Any = "agent_thinking", **data: Any) -> AgentEvent:
    return AgentEvent(type=type, run_id=RUN.run_id, thread_id=RUN.thread_id, seq=seq, agent_name="a", data=data)


def test_layout_fence_and_reads(firestore_client: Any, firestore_prefix: str) -> None:
    log = EventLog("netra-local", ttl_days=7)
    first, second = _event(1, "agent_started"), _event(2, n=2)
    log.append(RUN, first)
    log.append(RUN, second)
    log.append(RUN, second)  # the same event again (a retried commit): accepted, nothing duplicated
    with pytest.raises(SeqConflict):
        log.append(RUN, _event(2, n="another writer"))  # seq 2 is taken: the other writer stops
    log.append(RUN, _event(3, "agent_completed"))

    doc = (
        firestore_client.collection(f"{firestore_prefix}runs")
        .document(RUN.run_id)
        .collection("events")
        .document("0000000002")
        .get()
        .to_dict()
    )
    assert doc["seq"] == 2 and doc["user_id"] == RUN.user_id and isinstance(doc["ts"], str)
    assert doc["expires_at"] is not None and doc["data"] == {"n": 2}
    state = log.run_state(RUN.run_id)
    assert state is not None and state["last_seq"] == 3 and state["status"] == "completed"
    assert state["thread_id"] == RUN.thread_id and state["user_id"] == RUN.user_id
    assert [e.seq for e in log.events(RUN.run_id)] == [1, 2, 3]
    assert [e.seq for e in log.events(RUN.run_id, after_seq=1, limit=1)] == [2]
    last = log.last_event(RUN.run_id)
    assert last is not None and last.type == "agent_completed" and last.terminal


def test_data_with_an_array_in_an_array_is_stored_and_read_back(firestore_client: Any, firestore_prefix: str) -> None:
    """A report's table rows (lists in a list): Firestore (and Google's emulator) refuses an array directly in an
    array; the run was redelivered until its time budget ran out. Stored encoded, read back as written, by the
    agent API's reads and the bridge's replay alike."""
    from functions.ws_bridge.replay import read_page

    log = EventLog("netra-local", ttl_days=7)
    table = {"columns": ["model", "cost"], "rows": [["gpt-4o", 1.5], ["mini", [0.1, [0.2]]]], "empty": [[]]}
    log.append(RUN, _event(1, "agent_started"))
    log.append(RUN, _event(2, "tool_completed", table=table, flat=[1, 2], maps=[{"a": [1, [2]]}]))
    expected = {"table": table, "flat": [1, 2], "maps": [{"a": [1, [2]]}]}
    assert log.events(RUN.run_id)[1].data == expected
    last = log.last_event(RUN.run_id)
    assert last is not None and last.data == expected
    assert [e.data for e in read_page(RUN.run_id, 1, 10)] == [expected]
