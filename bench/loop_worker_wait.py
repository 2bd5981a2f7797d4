"""How long a tool loop call waits behind another user's call held on its loop worker.

The decorator sends a user's tool loop calls from that user's worker's twin among
`outbox.WORKERS` loop workers. It used to send one request at a time: a call the service
holds (its turn's update still on its way from another process, `ATTACH_HOLD` = 2 s at most)
kept that loop worker busy, and another user's tool loop call on the same loop worker was
sent after it. Each loop worker now has `channel.LOOP_LINES` senders, each call in flight
on a connection of its own; this shows whether the other user's call still waits. Against
a real `semtrace serve`, prints how long user B's `tool_call` took to get its reply (block
entered to `call.reply` read after it) alone, and while user A's call, on the same loop
worker, is held. Asserts nothing.

`--held N`: N users' calls held at once on that loop worker (B is then the N+1th; with N at
`LOOP_LINES` it waits for a sender). `--land-after S`: the held calls' turns' updates land S
seconds after they were sent (the usual case: on their way), instead of never.

    .venv/bin/python bench/loop_worker_wait.py [--runs 3] [--held 1] [--land-after S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import start_server  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.integrations.channel import shard_of  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.outbox import WORKERS  # noqa: E402
from appliance.words import plural  # noqa: E402


def same_loop_worker(first: str, count: int = 1, prefix: str = "user-b") -> list[str]:
    """`count` other user ids whose calls go to `first`'s loop worker."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        if shard_of(f"{prefix}{n}", WORKERS) == shard_of(first, WORKERS):
            found.append(f"{prefix}{n}")
        n += 1
    return found


def b_call(app: Semtrace, b: str, resp: str) -> float:
    start = time.monotonic()
    with app.tool_call(user_id=b, previous_response_id=resp) as call:
        call.usage(input_tokens=3, output_tokens=2)
    assert call.reply is not None and call.reply.get("ok"), call.reply
    return time.monotonic() - start


def one_run(sock: Path, k: int, held_n: int = 1, land_after: float | None = None
            ) -> tuple[float, float]:
    first = f"user-a{k}"
    held_users = [first, *same_loop_worker(first, held_n - 1, f"user-a{k}-")]
    b = same_loop_worker(first)[0]
    with Client(sock, timeout=60) as c:  # another process registered the users' turns
        for user in (*held_users, b):
            assert c.ingest(tenant="bench", user_id=user, request_id=f"t-{user}-{k}",
                            text=f"Which platform for the {k} o'clock train?")["ok"]
        assert c.request({"v": 1, "op": "update", "tenant": "bench",
                          "request_id": f"t-{b}-{k}",
                          "response": {"id": f"resp-{b}-{k}", "status": "ok"}})["ok"]
    app = Semtrace(sock, tenant="bench", timeout=10.0, register_wait=0.05)
    alone = b_call(app, b, f"resp-{b}-{k}")
    a_took: list[float] = []

    def a_call(a: str) -> None:  # A's turn has no update yet: the service holds A's call
        start = time.monotonic()
        with app.tool_call(user_id=a, previous_response_id=f"resp-{a}-{k}") as call:
            pass
        call.reply  # noqa: B018 - waits for its reply
        a_took.append(time.monotonic() - start)

    def land() -> None:  # the held calls' turns' updates, on their way, land
        with Client(sock, timeout=60) as c:
            for a in held_users:
                c.request({"v": 1, "op": "update", "tenant": "bench",
                           "request_id": f"t-{a}-{k}",
                           "response": {"id": f"resp-{a}-{k}", "status": "ok"}})

    held = [threading.Thread(target=a_call, args=(a,)) for a in held_users]
    for t in held:
        t.start()
    if land_after is not None:
        threading.Timer(land_after, land).start()
    time.sleep(0.3 if land_after is None else min(0.3, land_after / 2))
    behind = b_call(app, b, f"resp-{b}-{k}")
    for t in held:
        t.join()
    print(f"{plural(len(held_users), 'held call')}: {max(a_took):.3f} s at most; B's behind "
          f"{'it' if len(held_users) == 1 else 'them'}: {behind:.3f} s", flush=True)
    app.flush(10)
    app.close()
    return alone, behind


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--held", type=int, default=1)
    ap.add_argument("--land-after", type=float, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = start_server(Path(tmp))
        try:
            runs = [one_run(sock, k, args.held, args.land_after) for k in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait(60)
    for name, figures in (("alone", [r[0] for r in runs]),
                          (f"behind {plural(args.held, 'held call')}", [r[1] for r in runs])):
        print(f"B's tool_call reply, {name}: median {statistics.median(figures):.3f} s, "
              f"{min(figures):.3f}-{max(figures):.3f} s ({args.runs} runs)")


if __name__ == "__main__":
    main()
