"""Fault-injection long run: kill -9 rounds, disk starvation and a protocol fuzzer.

Each kill round starts `semtrace serve`, drives sync ingests from three clients and
kills the service with SIGKILL: at the commit of a random batch (fail point), at a
random moment, in the middle of a shred (start-up retention) or of a migration
(`init`); or stops it and kills `semtrace keys rotate` after one of its steps (every
step in turn), then starts with the old or the new passphrase at random. The next
start must open the store and hold every acknowledged request. Prints rounds, faults
injected by kind, acknowledged requests, lost ones and crashes (a store that did not
open or failed `audit verify`). Asserts nothing; README's Limitations quote the figures.

    .venv/bin/python bench/faults.py [--rounds 100] [--fuzz 5000] [--disk 3] [--seed 14]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "faults"))
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import (  # noqa: E402
    InProcess,
    Service,
    check_reply,
    frames,
    integrity,
    kill_round,
    missing,
    rotation_round,
    run_cli,
)


def shred_round(tmp: Path, rng: random.Random, n: int) -> dict[str, int]:
    """Old and recent prompts replayed; the start-up retention run is killed mid-shred."""
    svc = Service(tmp)
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    new = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    rows = [{"tenant": "acme", "user_id": f"u{i % 4}", "request_id": f"{kind}-{n}-{i}",
             "ts": ts, "text": f"Question {i} about {kind} things"}
            for kind, ts in (("old", old), ("new", new)) for i in range(8)]
    src = tmp / f"in-{n}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli("replay", str(src), "--out", str(tmp / "out.jsonl"), *svc.args,
                   env=svc.env).returncode == 0
    svc.start(failpoint="shred.keys_destroyed:1")  # one shred_many call destroys the keys
    assert svc.proc is not None
    killed = svc.proc.wait(timeout=300) == -signal.SIGKILL
    svc.start()
    if not svc.alive():
        return {"acked": 8, "lost": 8, "crashes": 1, "faults": int(killed)}
    lost = len(missing(svc.sock, {f"new-{n}-{i}" for i in range(8)}))
    kept_old = 8 - len(missing(svc.sock, {f"old-{n}-{i}" for i in range(8)}))
    svc.stop()
    bad = integrity(svc)
    return {"acked": 8, "lost": lost + kept_old, "crashes": int(bool(bad)),
            "faults": int(killed)}


def migration_round(tmp: Path, rng: random.Random) -> dict[str, int]:
    """`init` killed at a random migration step; the next start must open the store."""
    data = tmp / "data"
    pw = tmp / "passphrase"
    pw.touch(mode=0o600)
    pw.write_text("fault bench passphrase\n")
    args = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    from appliance.migrations import KEY_MIGRATIONS, MIGRATIONS

    step = rng.randrange(1, len(MIGRATIONS) + len(KEY_MIGRATIONS) + 1)
    killed = run_cli("init", *args, env={"SEMTRACE_FAILPOINT": f"migration:{step}"})
    check = run_cli("serve", "--check", *args)
    return {"acked": 0, "lost": 0, "crashes": int(check.returncode != 0),
            "faults": int(killed.returncode == -signal.SIGKILL)}


def kill_rounds(rounds: int, rng: random.Random) -> dict[str, int]:
    from appliance.store.rotation import STEPS

    totals = {"rounds": 0, "faults": 0, "acked": 0, "lost": 0, "crashes": 0}
    kinds = {"commit": 0, "random": 0, "shred": 0, "migration": 0, "rotation": 0}
    faults = dict.fromkeys(kinds, 0)
    refused_old = 0
    with tempfile.TemporaryDirectory(prefix="semtrace-faults-") as base:
        (Path(base) / "kills").mkdir()
        svc = Service(Path(base) / "kills")
        for n in range(rounds):
            kind = ("shred" if n % 10 == 5 else "migration" if n % 10 == 9
                    else "rotation" if n % 10 == 3 else "commit" if n % 2 else "random")
            tmp = Path(tempfile.mkdtemp(dir=base))
            if kind == "shred":
                out = shred_round(tmp, rng, n)
            elif kind == "migration":
                out = migration_round(tmp, rng)
            elif kind == "rotation":  # every step in turn, old or new passphrase at random
                out = rotation_round(Service(tmp), rng=rng, tag=f"k{n}",
                                     step=kinds["rotation"] % len(STEPS) + 1,
                                     reopen_with_new=rng.random() < 0.5)
                refused_old += out.pop("refused_old")
            else:
                fp = f"batch.commit:{rng.randrange(2, 12)}" if kind == "commit" else None
                out = kill_round(svc, rng=rng, tag=f"k{n}", failpoint=fp)
            kinds[kind] += 1
            faults[kind] += out["faults"]
            totals["rounds"] += 1
            for key in ("faults", "acked", "lost", "crashes"):
                totals[key] += out[key]
            print(f"round {n + 1}/{rounds} {kind}: {out} totals {json.dumps(totals)}",
                  file=sys.stderr, flush=True)
        totals["integrity_problems"] = len(integrity(svc))
    return {**totals, **{f"rounds_{k}": v for k, v in kinds.items()},
            **{f"faults_{k}": v for k, v in faults.items()},
            "rotation_old_passphrase_refused_after_finish": refused_old}


def _disk_round(tmp: Path, full: bool) -> dict[str, int] | None:
    from test_fault_disk import fill, starve_and_recover, tmpfs

    if not full:
        svc = Service(tmp)
        return starve_and_recover(svc, lambda: svc.file_limit(0),
                                  lambda: svc.file_limit(None), "io_error")
    with tmpfs(tmp / "disk", 48) as mounted:
        if not mounted:
            return None
        svc = Service(tmp, tmp / "disk" / "data")
        filler: list[Path] = []
        return starve_and_recover(svc, lambda: filler.append(fill(tmp / "disk")),
                                  lambda: filler[0].unlink(), "disk_full")


def disk_rounds(rounds: int) -> dict[str, int]:
    """I/O errors at commit (RLIMIT_FSIZE), and a full tmpfs where mounting is allowed."""
    out = {"disk_rounds": 0, "disk_refused": 0, "disk_acked": 0, "disk_failures": 0}
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="semtrace-disk-") as base:
            try:
                got = _disk_round(Path(base), full=bool(n % 2))
            except AssertionError as exc:
                out["disk_failures"] += 1
                print(f"disk round {n}: {exc}", file=sys.stderr)
                got = {}
            if got is None:
                continue
            out["disk_rounds"] += 1
            out["disk_refused"] += got.get("refused", 0)
            out["disk_acked"] += got.get("acked", 0)
    return out


def fuzz(examples: int, seed: int) -> dict[str, int]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    from appliance.config import load_policies
    from appliance.keys import Keyring
    from appliance.runtime import make_pipeline, open_runtime, prepare_dir
    from appliance.store import Store

    with tempfile.TemporaryDirectory(prefix="semtrace-fuzz-") as base:
        data = Path(base) / "data"
        prepare_dir(data)
        ring = Keyring.random()
        Store.open(data, ring).close()
        rt = open_runtime(data, keyring=ring, policies=load_policies())
        svc = InProcess(make_pipeline(rt), Path(base) / "fuzz.sock")
        seen = {"frames": 0, "errors": 0}

        @hseed(seed)
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(frames())
        def one(frame: bytes) -> None:
            seen["frames"] += 1
            check_reply(frame, svc.answer(frame))

        try:
            one()
        except AssertionError as exc:
            seen["errors"] += 1
            print(f"fuzzer: {exc}", file=sys.stderr)
        alive = svc.answer(b'{"v":1,"op":"ping"}')["ok"]
        internal = svc.service.counters["errors"]
        svc.close()
        rt.close()
    return {"fuzz_frames": seen["frames"], "fuzz_failures": seen["errors"],
            "fuzz_internal_errors": internal, "fuzz_alive_after": int(alive)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--fuzz", type=int, default=5000)
    ap.add_argument("--disk", type=int, default=4)
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    start = time.monotonic()
    rng = random.Random(a.seed)
    figures = {**kill_rounds(a.rounds, rng), **disk_rounds(a.disk),
               **(fuzz(a.fuzz, a.seed) if a.fuzz > 0 else {})}
    figures["minutes"] = round((time.monotonic() - start) / 60, 1)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
