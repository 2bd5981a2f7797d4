"""Search latency through the service's query socket on a store of N real prompts.

Builds (once, then reuses with --dir) a store by replaying the first N prompts of
`/work/shared/bench/threads-{dev,wide}.jsonl` through the whole pipeline (`semtrace
replay`: Presidio redaction, the bundled llama.cpp embedder, the linker, SQLCipher), all
in tenant acme (which allows cross-user search), users kept apart per source, times
moved so the newest prompt is an hour old (retention keeps them all). Then starts
`semtrace serve` on it and times `search` requests on its query socket (role analyst,
the service owner): cross-user over the tenant, and one user's prompts. Each timing is
the whole round trip: embedding the query text, the vector index and fetching the hits.
With --ingest N, then N ingests on the ingest socket (one client, tenant live, --window
of them in flight as a gateway pipelines them) alone, and N more while another client
searches without pause: each ingest's and search's round trip, and prompts/s (does a
search hold up ingest replies, and ingest the searches?).
Prints figures; asserts nothing.

    .venv/bin/python bench/socket_search.py [--dir DIR] [--prompts 10000] [--queries 200]
        [--ingest N [--window W]] [--code OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.client import Client  # noqa: E402

SHARED = next((p / "shared" / "bench" for p in Path(__file__).resolve().parents
               if (p / "shared" / "bench").is_dir()), Path("/work/shared/bench"))
SOURCES = ("dev", "wide")


def stream(n: int, out: Path) -> tuple[list[str], list[str]]:
    """Write the replay stream of the first `n` prompts; returns (texts, user ids)."""
    rows: list[dict[str, object]] = []
    for src in SOURCES:
        lines = (SHARED / f"threads-{src}.jsonl").read_text().splitlines()
        part = [json.loads(x) for x in lines]
        newest = max(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in part)
        shift = datetime.now(UTC) - timedelta(hours=1) - newest
        for r in part:
            ts = datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) + shift
            rows.append({"tenant": "acme", "user_id": f"{src}-{r['user_id']}",
                         "request_id": f"{src}-{r['index']}", "text": r["text"],
                         "ts": ts.isoformat().replace("+00:00", "Z")})
    rows = rows[:n]
    with out.open("w") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({"index": i, **row}) + "\n")
    return [str(r["text"]) for r in rows], sorted({str(r["user_id"]) for r in rows})


def build(base: Path, n: int) -> tuple[list[str], list[str], float]:
    """The store in base/data (replayed unless there); (texts, users, replay s or 0)."""
    base.mkdir(parents=True, exist_ok=True)
    pw = base / "pw"
    if not pw.exists():
        pw.touch(mode=0o600)
        pw.write_text("benchmark passphrase\n")
    texts, users = stream(n, base / "stream.jsonl")
    data = base / "data"
    if (data / "done").exists():
        return texts, users, 0.0
    args = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    subprocess.run([sys.executable, "-m", "appliance", "init", *args], check=True,
                   capture_output=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "appliance", "replay", str(base / "stream.jsonl"),
                    "--out", str(base / "replay-out.jsonl"), *args], check=True)
    took = time.perf_counter() - t
    (data / "done").write_text(f"{n} prompts replayed in {took:.0f} s\n")
    return texts, users, took


def serve(base: Path, code: Path | None) -> tuple[subprocess.Popen[bytes], Path]:
    """`semtrace serve` on the store (`code`: run another checkout's appliance package)."""
    data = base / "data"
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "--data-dir",
                             str(data), "--passphrase-file", str(base / "pw")],
                            stderr=subprocess.DEVNULL, env=env, cwd=code)
    qsock = data / "query.sock"
    for _ in range(1200):
        try:
            with Client(qsock, timeout=5) as c:
                if c.request({"v": 1, "op": "version"}).get("ok"):
                    return proc, qsock
        except Exception:
            pass
        if proc.poll() is not None:
            raise SystemExit("the service exited")
        time.sleep(0.2)
    raise SystemExit("the service did not start")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def timed(c: Client, req: dict[str, object]) -> tuple[float, int]:
    t = time.perf_counter()
    reply = c.request({"v": 1, "op": "search", "role": "analyst", "tenant": "acme", **req})
    ms = (time.perf_counter() - t) * 1000
    if not reply.get("ok"):
        raise SystemExit(f"search failed: {reply.get('error')}")
    return ms, len(reply["hits"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="Keep (and reuse) the store here.")
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ingest", type=int, default=0,
                    help="Also time this many ingests alone and as many during searches.")
    ap.add_argument("--window", type=int, default=1,
                    help="--ingest's requests in flight at once (1: one at a time).")
    ap.add_argument("--code", type=Path, default=None,
                    help="Serve with the appliance package of this checkout (e.g. to time "
                    "main's code on the same store).")
    args = ap.parse_args()
    if args.dir is not None:
        run(args.dir, args)
        return
    with tempfile.TemporaryDirectory(prefix="semtrace-search-") as tmp:
        run(Path(tmp), args)


def run(base: Path, args: argparse.Namespace) -> None:
    """Build (or reuse) the store in `base`, serve it, time the searches, print."""
    texts, users, took = build(base, args.prompts)
    if took:
        print(f"replayed {len(texts):,} prompts in {took:.0f} s ({len(texts) / took:.0f}/s)")
    proc, qsock = serve(base, args.code)
    try:
        load = os.getloadavg()[0]
        with Client(qsock, timeout=600) as c:
            first, _ = timed(c, {"text": texts[0], "limit": 10})
            cross, got = [], []
            for i in range(args.queries):
                ms, n = timed(c, {"text": texts[(i * 7919) % len(texts)], "limit": 10})
                cross.append(ms)
                got.append(n)
            user = [timed(c, {"text": texts[(i * 104729) % len(texts)], "limit": 10,
                              "user": users[(i * 31) % len(users)]})[0]
                    for i in range(args.queries // 2)]
        mixed = ingest_and_search(qsock.parent / "semtrace.sock", qsock, texts, args.ingest,
                                  args.window)
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"{len(texts):,} prompts in tenant acme; code {args.code or 'this checkout'}; "
          f"load average {load:.1f} at start")
    print(f"first search after start: {first:.0f} ms")
    print(f"cross-user top-10, {len(cross)} queries: p50 {statistics.median(cross):.1f} ms, "
          f"p99 {pct(cross, 0.99):.1f} ms (hits per query: min {min(got)})")
    print(f"one user's top-10, {len(user)} queries: p50 {statistics.median(user):.1f} ms, "
          f"p99 {pct(user, 0.99):.1f} ms")
    for name, xs in mixed.items():
        print(f"{name}, {len(xs)}: p50 {statistics.median(xs):.1f} ms, p90 "
              f"{pct(xs, 0.9):.1f} ms, max {max(xs):.1f} ms")


def ingests(sock: Path, texts: list[str], n: int, tag: str, window: int) -> list[float]:
    """The round trip of `n` ingests (new request ids each run), `window` of them in flight
    (1: one at a time; more: as a gateway pipelines them, the worker's batches grow)."""
    reqs = [{"v": 1, "op": "ingest", "tenant": "live", "user_id": f"live-{i % 20}",
             "request_id": f"{tag}-{i}", "text": texts[(i * 613) % len(texts)]}
            for i in range(n)]
    sent: list[float] = []
    out = []
    with Client(sock, timeout=600) as c:
        def stamped() -> Iterator[dict[str, object]]:
            for r in reqs:
                sent.append(time.perf_counter())
                yield r
        for i, r in enumerate(c.stream(stamped(), window=window)):
            out.append((time.perf_counter() - sent[i]) * 1000)
            if not r.get("ok"):
                raise SystemExit(f"ingest failed: {r.get('error')}")
    return out


def ingest_and_search(sock: Path, qsock: Path, texts: list[str], n: int,
                      window: int) -> dict[str, list[float]]:
    """`n` ingests alone, then `n` more while another client searches without pause."""
    if not n:
        return {}
    tag = f"live-{os.getpid()}-{time.time_ns()}"
    t = time.perf_counter()
    alone = ingests(sock, texts, n, f"{tag}-a", window)
    took = {"alone": time.perf_counter() - t}
    searches: list[float] = []
    done = threading.Event()

    def search_on() -> None:
        with Client(qsock, timeout=600) as c:
            i = 0
            while not done.is_set():
                searches.append(timed(c, {"text": texts[(i * 7919) % len(texts)],
                                          "limit": 10})[0])
                i += 1

    searcher = threading.Thread(target=search_on)
    searcher.start()
    try:
        t = time.perf_counter()
        during = ingests(sock, texts, n, f"{tag}-b", window)
        took["during searches"] = time.perf_counter() - t
    finally:
        done.set()
        searcher.join()
    print(" ".join(f"ingests {k}: {n / s:.0f}/s;" for k, s in took.items())
          + f" window {window}")
    return {"ingest alone": alone, "ingest during searches": during,
            "search during ingests": searches}


if __name__ == "__main__":
    main()
