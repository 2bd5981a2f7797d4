"""Load benchmark of `semtrace serve` through its real socket.

Single-client ack latency (sync mode, ~30-token prompts), sustained throughput
with N concurrent clients, errors and losses, the server's CPU time per prompt under
the concurrent load (its user + system time from /proc: far less noisy than prompts/s on a
shared host) and that of its busiest threads, the batches it ran (how many prompts each
took on average), and its RSS. Prints figures; asserts nothing.

    .venv/bin/python bench/load.py [--prompts 2000] [--clients 8] [--rss-prompts 0]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.client import Client  # noqa: E402

# the shared data sit next to the checkout (/work/shared beside /work/main) or next to its
# parent (a worktree in /work/wt/NAME)
DEV = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in Path(__file__).resolve().parents
            if (p / "shared" / "bench").is_dir()),
           Path(__file__).resolve().parents[2] / "shared" / "bench" / "threads-dev.jsonl")
TEMPLATE = ("could you tell me how the quarterly budget review for the platform team is going "
            "and whether the new storage cluster will be ready before the migration deadline")
WORDS = TEMPLATE.split(" ")


def texts() -> list[str]:
    if DEV.exists():
        return [json.loads(x)["text"] for x in DEV.read_text().splitlines()]
    return [" ".join(WORDS[i % 5:] + WORDS[: i % 5]) for i in range(1000)]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("benchmark passphrase\n")
    data = tmp / "data"
    args = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    subprocess.run([sys.executable, "-m", "appliance", "init", *args], check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *args],
                            stderr=subprocess.DEVNULL)
    sock = data / "semtrace.sock"
    for _ in range(600):
        try:
            with Client(sock, timeout=5) as c:
                c.ping()
            return proc, sock
        except Exception:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of a process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def busiest_threads(pid: int, before: dict[int, float], n: int) -> str:
    """CPU ms a prompt of the server's busiest threads over the concurrent phase (the
    event loop is the main thread; the ingest worker and, since the embedding runs ahead
    on a thread of its own, the embedding thread are the two busiest others). On a host
    with both cores free, the busiest thread bounds prompts/s at 1000 / its ms."""
    after = thread_cpu_s(pid)
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    main = used.pop(pid, 0.0)
    top = sorted(used.values(), reverse=True)[:3]
    return (f"main thread {main * 1000 / n:.2f}, busiest others "
            + " / ".join(f"{t * 1000 / n:.2f}" for t in top) + " ms a prompt")


def batch_count(sock: Path) -> int:
    """Batches the service has run (its `stats` counters)."""
    with Client(sock) as c:
        return int(c.request({"v": 1, "op": "stats"})["counters"].get("batches", 0))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def single_client(sock: Path, corpus: list[str], n: int) -> list[float]:
    lat = []
    with Client(sock) as c:
        for i in range(n):
            t = time.perf_counter()
            r = c.ingest(tenant="bench", user_id=f"s{i % 20}", text=corpus[i % len(corpus)],
                         request_id=f"single-{i}")
            lat.append((time.perf_counter() - t) * 1000)
            assert r["ok"], r
    return lat


def concurrent(sock: Path, corpus: list[str], n: int, clients: int) -> tuple[float, int, int]:
    errors, acked = [0], [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        reqs = ({"v": 1, "op": "ingest", "tenant": "bench", "user_id": f"c{k}-{i % 10}",
                 "text": corpus[(k * 7919 + i) % len(corpus)], "request_id": f"conc-{k}-{i}"}
                for i in range(n // clients))
        with Client(sock, timeout=120) as c:
            for r in c.stream(reqs, window=16):
                with lock:
                    acked[0] += 1 if r.get("ok") else 0
                    errors[0] += 0 if r.get("ok") else 1

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t, acked[0], errors[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rss-prompts", type=int, default=0)
    args = ap.parse_args()
    corpus = texts()
    print(f"prompts: {DEV} ({len(corpus)} texts)" if DEV.exists() else
          f"prompts: {DEV} not found, a synthetic 30-word prompt instead")
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = start_server(Path(tmp))
        try:
            print(f"server RSS when ready (no prompt yet): {rss_mb(proc.pid):.0f} MB")
            lat = single_client(sock, corpus, args.single)
            print(f"single client, sync: n={len(lat)} p50={statistics.median(lat):.1f} ms "
                  f"p99={pct(lat, 0.99):.1f} ms p99.9={pct(lat, 0.999):.1f} ms "
                  f"max={max(lat):.1f} ms")
            busy, threads, batches = cpu_s(proc.pid), thread_cpu_s(proc.pid), batch_count(sock)
            secs, acked, errors = concurrent(sock, corpus, args.prompts, args.clients)
            busy, batches = cpu_s(proc.pid) - busy, batch_count(sock) - batches
            print(f"{args.clients} clients: {acked} acked in {secs:.1f} s = "
                  f"{acked / secs:.0f} prompts/s, errors={errors}, "
                  f"lost={args.prompts - args.prompts % args.clients - acked - errors}; "
                  f"server CPU {busy * 1000 / max(acked, 1):.2f} ms a prompt, "
                  f"load average {os.getloadavg()[0]:.1f}")
            print(f"server threads: {busiest_threads(proc.pid, threads, max(acked, 1))}; "
                  f"{batches} batches, {acked / max(batches, 1):.1f} prompts a batch")
            with Client(sock) as c:
                stored = c.request({"v": 1, "op": "stats"})["store"]["records"]
            print(f"stored records: {stored}; server RSS {rss_mb(proc.pid):.0f} MB "
                  f"(peak {rss_mb(proc.pid, 'VmHWM'):.0f} MB)")
            if args.rss_prompts:
                concurrent(sock, corpus, args.rss_prompts, args.clients)
                print(f"RSS after {args.rss_prompts + stored} prompts: {rss_mb(proc.pid):.0f} MB "
                      f"(peak {rss_mb(proc.pid, 'VmHWM'):.0f} MB)")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
