"""A tiny CloudEvent function the Pub/Sub push tests start with functions-framework.

Each call bumps a counter file (PUSH_COUNTER_FILE) and appends what it received to PUSH_RECORD_FILE as
one JSON line; the first PUSH_FAIL_FIRST calls raise, so functions-framework answers 500.
"""

from __future__ import annotations

import fcntl
import json
import os

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def receive(event: CloudEvent) -> None:
    with open(os.environ["PUSH_COUNTER_FILE"], "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)  # concurrent pushes must not lose a count
        counter.seek(0)
        attempt = int(counter.read() or "0") + 1
        counter.seek(0)
        counter.truncate()
        counter.write(str(attempt))
        with open(os.environ["PUSH_RECORD_FILE"], "a") as record:
            record.write(
                json.dumps(
                    {
                        "attempt": attempt,
                        "id": event["id"],
                        "type": event["type"],
                        "source": event["source"],
                        "data": event.get_data(),
                    }
                )
                + "\n"
            )
    if attempt <= int(os.environ.get("PUSH_FAIL_FIRST", "0")):
        raise RuntimeError(f"failing on purpose (call {attempt})")
