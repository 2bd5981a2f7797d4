"""Start-up retention catch-up: how long prompts wait while `serve` shreds a backlog.

A data dir is filled through the real Store with RECORDS records in BUCKETS buckets of
days long past (all due), then `semtrace serve --metrics` starts on it; while
/metrics says `retention_catchup`, prompts are sent one after another over the socket
(sync ack) and timed. Prints the catch-up's length and the prompts' latency; asserts
nothing.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/catchup.py [--records 40000] [--buckets 4000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shred import fill  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.keys import read_passphrase_file  # noqa: E402
from appliance.runtime import init_data_dir  # noqa: E402
from appliance.store import Store  # noqa: E402

PORT = 19465


def state() -> str | None:
    """The service's state from /metrics, None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("semtrace_service_state") and line.endswith(" 1.0"):
            return line.split('"')[1]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40_000)
    ap.add_argument("--buckets", type=int, default=4_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pf = tmp / "pass"
        pf.write_text("bench passphrase for the catch-up\n")
        pf.chmod(0o600)
        data = tmp / "data"
        store = Store.open(data, init_data_dir(data, read_passphrase_file(pf)))
        fill(store, args.records, args.buckets)  # days of 2026-01 on: past 30-day retention
        store.checkpoint()
        store.close()
        serve = subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", "--data-dir", str(data),
             "--passphrase-file", str(pf), "--metrics", f"127.0.0.1:{PORT}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while state() != "retention_catchup":
                if serve.poll() is not None:
                    raise SystemExit("serve exited before its catch-up")
                time.sleep(0.02)
            began = time.perf_counter()
            waits: list[float] = []
            with Client(data / "semtrace.sock", timeout=600) as c:
                while state() == "retention_catchup":
                    t = time.perf_counter()
                    r = c.ingest(tenant="live", user_id=f"u{len(waits) % 3}",
                                 text=f"Is the VPN down again? ({len(waits)})",
                                 request_id=f"p{len(waits)}", ts=datetime.now(UTC).isoformat())
                    waits.append(time.perf_counter() - t)
                    if not r.get("ok"):
                        raise SystemExit(f"refused: {r}")
            lasted = time.perf_counter() - began
        finally:
            os.kill(serve.pid, signal.SIGTERM)
            serve.wait(120)
    waits.sort()
    print(f"catch-up of {args.records} records in {args.buckets} buckets: {lasted:.1f} s seen "
          f"from its start; {len(waits)} prompts answered meanwhile, p50 "
          f"{waits[len(waits) // 2] * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
