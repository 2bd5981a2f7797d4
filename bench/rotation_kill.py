"""Key rotation under kill -9 at random moments: the long run behind tests/faults.

Builds one store (N synthetic records in B buckets, written through the real
Store: SQLCipher, per-bucket DEKs), then per round copies it, runs
`semtrace keys rotate` in a child process, kills it (SIGKILL) after a random
delay within one rotation's duration, reopens with the old or the new key file
(at random), and counts what is readable. Prints figures; asserts nothing.

    .venv/bin/python bench/rotation_kill.py [--rounds 100] [--records 20000] [--buckets 400]
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.audit import verify_chain  # noqa: E402
from appliance.errors import WrongKey  # noqa: E402
from appliance.keys import read_key_file, write_key_file  # noqa: E402
from appliance.runtime import init_data_dir, open_runtime  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shred import fill  # noqa: E402


def rotate_cmd(data: Path, old: Path, new: Path) -> list[str]:
    return [sys.executable, "-m", "appliance", "keys", "rotate", "--data-dir", str(data),
            "--key-file", str(old), "--new-key-file", str(new)]


def readable(data: Path, key: Path) -> tuple[int, bool]:
    """(records whose text decrypts, audit chain ok) after opening with `key`."""
    rt = open_runtime(data, read_key_file(key))
    try:
        n = sum(1 for r in rt.store.records("1=1", ()) if r.text is not None)
        return n, verify_chain(rt.store.db, rt.store.keys_db).ok
    finally:
        rt.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--buckets", type=int, default=400)
    args = ap.parse_args()
    rng = random.Random(14)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old, new = root / "old.key", root / "new.key"
        write_key_file(old)
        write_key_file(new)
        template = root / "template"
        init_data_dir(template, read_key_file(old))
        rt = open_runtime(template, read_key_file(old))
        fill(rt.store, args.records, args.buckets)
        rt.store.checkpoint()
        rt.close()

        probe = root / "probe"
        shutil.copytree(template, probe)
        t = time.perf_counter()
        subprocess.run(rotate_cmd(probe, old, new), check=True, capture_output=True)
        full = time.perf_counter() - t
        print(f"{args.records} records in {args.buckets} buckets; one rotation (child "
              f"process, start to exit) {full:.2f} s")

        outcome: Counter[str] = Counter()
        lost = failed_opens = broken_chains = 0
        for i in range(args.rounds):
            data = root / f"r{i}"
            shutil.copytree(template, data)
            child = subprocess.Popen(rotate_cmd(data, old, new), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, full))
            child.send_signal(signal.SIGKILL)
            code = child.wait()
            journal = (data / "rotation.json").exists()
            outcome["killed mid-rotation (journal present)" if journal else
                    "killed before the journal or after completion" if code < 0 else
                    "finished before the kill"] += 1
            key = old if rng.random() < 0.5 else new
            try:
                n, ok = readable(data, key)
            except WrongKey:  # the other credential is the valid one now
                try:
                    n, ok = readable(data, new if key == old else old)
                except Exception:  # noqa: BLE001 - counted, the bench goes on
                    failed_opens += 1
                    shutil.rmtree(data)
                    continue
            except Exception:  # noqa: BLE001 - counted, the bench goes on
                failed_opens += 1
                shutil.rmtree(data)
                continue
            lost += args.records - n
            broken_chains += not ok
            shutil.rmtree(data)
        print(f"rounds {args.rounds}; kills {sum(v for k, v in outcome.items() if 'killed' in k)}")
        for k, v in sorted(outcome.items()):
            print(f"  {k}: {v}")
        print(f"records lost {lost}; stores that failed to open {failed_opens}; audit chains "
              f"broken {broken_chains}")


if __name__ == "__main__":
    main()
