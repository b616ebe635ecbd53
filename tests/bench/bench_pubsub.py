"""Publish-to-deliver throughput and latency of the Pub/Sub emulator with the official client.

The emulator runs as a subprocess (``python -m emulators.pubsub``); one PublisherClient (default
batching) publishes N messages while one SubscriberClient streaming pull receives and acks them in the
same process, so a message's latency is its callback time minus its publish() call time on one clock.
The same-run baseline hands the same messages from one thread to another through a queue.Queue, so
the emulator's figures can be read as a ratio on a noisy machine.

``python -m tests.bench.bench_pubsub`` (BENCH_PUBSUB_MESSAGES=5000 by default; the project's own emulator,
and Google's in the same run where gcloud's component and Java are installed).
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
import time
import uuid
from dataclasses import dataclass

MESSAGES = int(os.environ.get("BENCH_PUBSUB_MESSAGES", "5000"))
# The paced run shows the latency of one message on an idle path (like one agent event), not of a burst.
PACED_MESSAGES = 300
PACED_INTERVAL_S = 0.005
PAYLOAD = b"x" * 256
TIMEOUT_S = 40.0


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def as_dict(self) -> dict[str, float]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.per_second, 1),
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3),
        }


def _pace(i: int, start: float, interval_s: float) -> None:
    if interval_s:
        delay = start + i * interval_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def measure_queue(name: str, n: int, interval_s: float = 0.0) -> Result:
    """Baseline: the same hand-off between two threads through queue.Queue."""
    handoff: queue.Queue[tuple[int, float, bytes]] = queue.Queue()
    received: list[float] = [0.0] * n
    sent: list[float] = [0.0] * n

    def consume() -> None:
        for _ in range(n):
            i, _, _ = handoff.get()
            received[i] = time.perf_counter()

    consumer = threading.Thread(target=consume)
    consumer.start()
    start = time.perf_counter()
    for i in range(n):
        _pace(i, start, interval_s)
        sent[i] = time.perf_counter()
        handoff.put((i, sent[i], PAYLOAD))
    consumer.join(TIMEOUT_S)
    return Result(name, n, max(received) - start, [(r - s) * 1000 for r, s in zip(received, sent, strict=True)])


def measure_emulator(name: str, host: str, n: int, interval_s: float = 0.0) -> Result:
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    tag = uuid.uuid4().hex[:8]
    topic = f"projects/bench/topics/bench-{tag}"
    subscription = f"projects/bench/subscriptions/bench-{tag}"
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
    sent: list[float] = [0.0] * n
    received: list[float] = [0.0] * n
    lock = threading.Lock()
    done = threading.Event()
    count = 0

    def callback(message: pubsub_v1.subscriber.message.Message) -> None:
        nonlocal count
        now = time.perf_counter()
        i = int(message.attributes["i"])
        message.ack()
        with lock:
            if received[i] == 0.0:
                received[i] = now
                count += 1
                if count == n:
                    done.set()

    flow = pubsub_v1.types.FlowControl(max_messages=n)
    stream = subscriber.subscribe(subscription, callback, flow_control=flow)
    try:
        time.sleep(0.5)  # let the stream open so the figure is publish-to-deliver, not stream set-up
        start = time.perf_counter()
        futures = []
        for i in range(n):
            _pace(i, start, interval_s)
            sent[i] = time.perf_counter()
            futures.append(publisher.publish(topic, PAYLOAD, i=str(i)))
        for future in futures:
            future.result(timeout=TIMEOUT_S)
        if not done.wait(TIMEOUT_S):
            raise TimeoutError(f"{name}: only {count} of {n} messages delivered within {TIMEOUT_S:g}s")
        elapsed = max(received) - start
    finally:
        stream.cancel()
        try:
            stream.result(timeout=10)
        except Exception:  # noqa: S110 - a cancelled stream ends with an error by design
            pass
        subscriber.delete_subscription(subscription=subscription)
        publisher.delete_topic(topic=topic)
        subscriber.close()
        publisher.stop()
    return Result(name, n, elapsed, [(r - s) * 1000 for r, s in zip(received, sent, strict=True)])


def print_table(results: list[Result]) -> None:
    print(f"{'path':<56} {'msgs':>6} {'msg/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for r in results:
        print(
            f"{r.name:<56} {r.messages:>6} {r.per_second:>10.0f} {r.percentile(0.5):>9.3f} {r.percentile(0.99):>9.3f}"
        )
    burst_queue, burst_emulator = results[0], results[1]
    print(
        f"own emulator's burst throughput = 1/{burst_queue.per_second / burst_emulator.per_second:.0f} of the queue's"
    )


def main() -> dict[str, dict[str, float]]:
    from emulators.implementation import OFFICIAL, OWN, official_parts
    from tests.fixtures.pubsub import start_emulator_process

    kinds = [OWN]
    if official_parts()[0] is not None:
        kinds.append(OFFICIAL)
    paced = f"paced {PACED_MESSAGES} at {1 / PACED_INTERVAL_S:.0f}/s"
    results = [measure_queue("queue.Queue hand-off, burst (baseline)", MESSAGES)]
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    try:
        for kind in kinds:
            proc, host = start_emulator_process(kind)
            try:
                results.append(measure_emulator(f"{kind} emulator, streaming pull, burst", host, MESSAGES))
                results.append(
                    measure_emulator(
                        f"{kind} emulator, streaming pull, {paced}", host, PACED_MESSAGES, PACED_INTERVAL_S
                    )
                )
            finally:
                proc.stop()
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
    results.append(measure_queue(f"queue.Queue hand-off, {paced} (baseline)", PACED_MESSAGES, PACED_INTERVAL_S))
    print_table(results)
    return {r.name: r.as_dict() for r in results}


if __name__ == "__main__":
    main()
