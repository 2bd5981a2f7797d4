"""Retention benchmark: shred N records spread over B buckets; report size and time.

Records are written through the real Store (SQLCipher, per-bucket DEKs, AES-GCM)
with synthetic text and vectors. Prints figures; asserts nothing.

    .venv/bin/python bench/shred.py [--records 1000000] [--buckets 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.audit import AuditLog  # noqa: E402
from appliance.config import load_policies  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.records import Link, NewRecord, Prompt  # noqa: E402
from appliance.report import build_report, render, sign_report  # noqa: E402
from appliance.retention import Shredder, run_retention  # noqa: E402
from appliance.store import Store  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(store: Store, records: int, buckets: int, batch: int = 5000) -> None:
    users = max(1, buckets // 100)  # 100 days per user
    rng = np.random.default_rng(7)
    vec = rng.standard_normal(384).astype(np.float32)
    link = Link(parent_id=None, thread_id=None, position="new", intent="information_seeking",
                similarity=None)
    rows = []
    for i in range(records):
        b = i % buckets
        user, day = b % users, b // users
        p = Prompt(request_id=f"r{i}", tenant="acme", user_id=f"user{user}",
                   ts=T0 + timedelta(days=day, seconds=i % 86000), text="")
        rows.append(NewRecord(record_id=store.allocate_id(), prompt=p, user=f"u_{user}",
                              session_key=None, link=link, thread_id=f"th_{user}_{day}",
                              text=f"synthetic prompt number {i} about a routine question",
                              vector=vec, model_id="bench"))
        if len(rows) >= batch:
            store.insert(rows)
            rows = []
    store.insert(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--buckets", type=int, default=10_000)
    args = ap.parse_args()
    policies = load_policies()
    with tempfile.TemporaryDirectory() as tmp:
        ring = Keyring.random()
        store = Store.open(Path(tmp), ring)
        t = time.perf_counter()
        fill(store, args.records, args.buckets)
        print(f"wrote {args.records} records in {args.buckets} buckets in "
              f"{time.perf_counter() - t:.1f} s; db {Path(tmp, 'semtrace.db').stat().st_size >> 20}"
              " MB")
        audit = AuditLog(store.db, ring.audit_signer())
        t = time.perf_counter()
        body = build_report(store, audit, policies.retention)
        text = render(sign_report(body, ring.audit_signer()), "md")
        print(f"retention report before shredding: {time.perf_counter() - t:.2f} s, "
              f"{len(text)} bytes")
        t = time.perf_counter()
        report = run_retention(Shredder(store, audit), policies.retention, ring,
                               now=T0 + timedelta(days=10_000))
        secs = time.perf_counter() - t
        print(f"shredded {report.shredded} buckets / {report.records} records in {secs:.1f} s "
              f"({report.records / max(secs, 1e-9):.0f} records/s)")
        t = time.perf_counter()
        body = build_report(store, audit, policies.retention)
        text = render(sign_report(body, ring.audit_signer()), "md")
        print(f"retention report after shredding: {time.perf_counter() - t:.2f} s, "
              f"{len(text) >> 10} KiB")
        store.close()


if __name__ == "__main__":
    main()
