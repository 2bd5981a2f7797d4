"""Backup and restore benchmark: `semtrace backup` and `semtrace restore` of a data dir.

The data dir is made by `init` (passphrase: Argon2id, as an install makes it) and
filled through the real Store (SQLCipher, a DEK per tenant/user/day, AES-GCM) with
PROMPTS synthetic prompts spread over USERS users and DAYS recent days (within the
default 30-day retention, so restore's retention pass finds nothing due and the
figure is the copy, its checks and the pass). Each run times the real commands as
child processes (`python -m appliance backup|restore ... --json`: what an operator
runs, Python start-up, imports and Argon2id included) and reads each child's peak
RSS from its own rusage. Prints figures; asserts nothing.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/backup.py [--prompts 10000] [--users 20] \
        [--days 25] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.keys import read_passphrase_file  # noqa: E402
from appliance.records import Link, NewRecord, Prompt  # noqa: E402
from appliance.runtime import init_data_dir  # noqa: E402
from appliance.store import Store  # noqa: E402

TEXT = ("the VPN gateway certificate rotation schedule for the Oslo office and which port "
         "it listens on after the change plus a reminder about the quarterly report draft "
         "and the budget spreadsheet formulas that stopped working")
WORDS = TEXT.split()


def fill(data_dir: Path, passphrase_file: Path, prompts: int, users: int, days: int) -> None:
    """`prompts` records through the Store: user i % users, day (i // users) % days ago."""
    ring = init_data_dir(data_dir, read_passphrase_file(passphrase_file))
    store = Store.open(data_dir, ring)
    rng = np.random.default_rng(7)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    link = Link(parent_id=None, thread_id=None, position="new", intent="information_seeking",
                similarity=None)
    rows: list[NewRecord] = []
    for i in range(prompts):
        user, day = i % users, (i // users) % days
        words = rng.choice(WORDS, size=int(rng.integers(8, 40)))
        p = Prompt(request_id=f"r{i}", tenant=f"tenant{user % 3}", user_id=f"user{user}",
                   ts=today - timedelta(days=day, seconds=int(rng.integers(0, 40_000))),
                   text="")
        rows.append(NewRecord(
            record_id=store.allocate_id(), prompt=p, user=ring.pseudonym(p.tenant, p.user_id),
            session_key=None, link=link, thread_id=f"th_{user}_{day}_{i % 4}",
            text=" ".join(words), vector=rng.standard_normal(384).astype(np.float32),
            model_id="bench"))
        if len(rows) >= 2000:
            store.insert(rows)
            rows = []
    store.insert(rows)
    store.checkpoint()
    store.close()


def timed(args: list[str], scratch: Path) -> tuple[float, float, dict[str, object]]:
    """(seconds, peak RSS in MB, the --json output) of one `semtrace` command."""
    out_path, err_path = scratch / "out.json", scratch / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "appliance", *args, "--json"],
                                 cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"semtrace {args[0]} failed: {err_path.read_text().strip()}")
    return seconds, usage.ru_maxrss / 1024, json.loads(out_path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--days", type=int, default=25)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pf = tmp / "pass"
        pf.write_text("bench passphrase for backup and restore\n")
        pf.chmod(0o600)
        data = tmp / "data"
        t = time.perf_counter()
        fill(data, pf, args.prompts, args.users, args.days)
        size = sum(p.stat().st_size for p in data.iterdir() if p.is_file()) / 2**20
        print(f"data dir: {args.prompts} prompts, {args.users} users in 3 tenants, "
              f"{args.days} days ({args.users * args.days} buckets), {size:.1f} MB, "
              f"written in {time.perf_counter() - t:.1f} s")
        cred = ["--passphrase-file", str(pf)]
        empty = tmp / "empty"  # the fixed cost: start-up, imports, Argon2id, checks
        init_data_dir(empty, read_passphrase_file(pf))
        b, rb, _ = timed(["backup", str(tmp / "empty-backup"), "--data-dir", str(empty), *cred],
                         tmp)
        r, rr, _ = timed(["restore", str(tmp / "empty-backup"), "--data-dir",
                          str(tmp / "empty-restored"), "--erasures-from", str(empty), *cred], tmp)
        print(f"empty data dir: backup {b:.2f} s ({rb:.0f} MB), restore {r:.2f} s ({rr:.0f} MB)")
        backups, restores = [], []
        for run in range(args.runs):
            dest, target = tmp / f"backup{run}", tmp / f"restored{run}"
            secs, rss, out = timed(["backup", str(dest), "--data-dir", str(data), *cred], tmp)
            backups.append((secs, rss))
            print(f"run {run + 1}: backup {secs:.2f} s, peak RSS {rss:.0f} MB "
                  f"({json.dumps(out)[:160]})")
            secs, rss, out = timed(["restore", str(dest), "--data-dir", str(target),
                                    "--erasures-from", str(data), *cred], tmp)
            restores.append((secs, rss))
            print(f"run {run + 1}: restore {secs:.2f} s, peak RSS {rss:.0f} MB "
                  f"({json.dumps(out)[:160]})")
        for name, runs in (("backup", backups), ("restore", restores)):
            secs = [s for s, _ in runs]
            print(f"{name}: median {statistics.median(secs):.2f} s (min {min(secs):.2f}, "
                  f"max {max(secs):.2f}), peak RSS max {max(r for _, r in runs):.0f} MB")


if __name__ == "__main__":
    main()
