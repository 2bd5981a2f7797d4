"""The decorator in a multi-threaded application, against `semtrace serve` on its socket.

T application threads, each one user, run turns (a registration and an update each) through
one `Semtrace`. Prints the turns per second the adapter sent, how many blocks had their
conversation id inside the block (within `register_wait`), how many requests went
unrecorded (not sent, or lost with their connection), how many were sent and not answered
within `--timeout` (`unknown`: a slow service still stores them) and how many turns the
service stored (a refused registration is answered, so only the store tells it). The counts
are the adapter's own: its `semtrace_available` lines after each pause, plus what it counts
at the end. `--workers 1` is the adapter before
its requests went to one worker per user (`appliance/integrations/outbox.py`). Asserts
nothing.

    .venv/bin/python bench/decorator_threads.py [--threads 8] [--turns 40] [--workers 4]
        [--timeout 10]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import start_server, texts  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.integrations import outbox  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402


def stored(sock: Path) -> int:
    """Records the service holds (all tenants)."""
    with Client(sock, timeout=60) as c:
        return int(c.request({"v": 1, "op": "stats"})["store"]["records"])


class Counted(logging.Handler):
    """The adapter's counts in its `semtrace_available` lines (each line ends a pause)."""

    def __init__(self) -> None:
        super().__init__()
        self.unrecorded = self.unknown = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "semtrace_available":
            self.unrecorded += int(getattr(record, "unrecorded", 0))
            self.unknown += int(getattr(record, "unknown", 0))


def run(sock: Path, threads: int, turns: int, register_wait: float,
        timeout: float = 10.0) -> tuple[float, int, int, int, int]:
    """(turns per second, blocks with their conversation id inside, requests unrecorded,
    requests sent and not answered in time, turns stored)."""
    corpus = texts()
    before = stored(sock)
    counted = Counted()
    adapter_log = logging.getLogger("semtrace.integrations")
    adapter_log.addHandler(counted)
    adapter_log.setLevel(logging.INFO)
    adapter_log.propagate = False
    app = Semtrace(sock, tenant="bench", timeout=timeout, register_wait=register_wait)
    known = [0] * threads

    def user(k: int) -> None:
        for i in range(turns):
            with app.turn(user_id=f"user-{k}", text=corpus[(k * turns + i) % len(corpus)],
                          request_id=f"dt-{k}-{i}-{time.monotonic_ns()}") as turn:
                known[k] += turn.reply is not None  # inside the block: not waited for
                turn.usage(input_tokens=20, output_tokens=40)

    start = time.perf_counter()
    workers = [threading.Thread(target=user, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    app.flush(60)
    elapsed = time.perf_counter() - start
    breaker = app._channel.breaker
    missed, unknown = counted.unrecorded + breaker.missed, counted.unknown + breaker.unknown
    app.close()
    adapter_log.removeHandler(counted)
    time.sleep(min(timeout, 10.0) + 1)  # what was sent late is committed before counting
    return threads * turns / elapsed, sum(known), missed, unknown, stored(sock) - before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--register-wait", type=float, default=0.05)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, outbox.WORKERS])
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="the adapter's timeout (small: replies come late)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = start_server(Path(tmp))
        try:
            run(sock, 2, 5, 1.0)  # warm up
            for n in args.workers:
                outbox.WORKERS = n
                rate, known, missed, unknown, kept = run(
                    sock, args.threads, args.turns, args.register_wait, args.timeout)
                total = args.threads * args.turns
                print(f"workers={n}: {rate:.1f} turns/s over {args.threads} threads; "
                      f"{known}/{total} blocks knew their conversation within "
                      f"register_wait={args.register_wait:g} s; {missed} unrecorded, "
                      f"{unknown} sent and not answered within {args.timeout:g} s; "
                      f"{kept}/{total} turns stored")
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
