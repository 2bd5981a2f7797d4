"""`cluster forget`'s safety note for a large tenant: its size and the time it takes.

`cluster export` notes, per tenant, a digest of each bucket's record ids
(appliance/cluster/exported.py); `forget` recomputes them and compares. A bucket
is one (tenant, user, day), so the note grows with a tenant's users times its
days. Records are written through the real Store (SQLCipher, per-bucket DEKs),
as bench/shred.py does. Prints figures; asserts nothing.

    .venv/bin/python bench/forget_note.py [--records 200000] [--buckets 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shred import fill  # noqa: E402

from appliance.cluster import exported  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--buckets", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp), Keyring.random())
        t = time.perf_counter()
        fill(store, args.records, args.buckets)
        print(f"wrote {args.records} records of one tenant in {args.buckets} buckets in "
              f"{time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        exported.note(store.db, ["acme"])
        noted = time.perf_counter() - t
        row = store.db.execute("SELECT length(value) FROM meta WHERE key = ?",
                               (exported.KEY,)).fetchone()
        print(f"export's note: {row[0] / 1024:.0f} KiB ({row[0] / args.buckets:.0f} bytes a "
              f"bucket), written in {noted:.2f} s")
        t = time.perf_counter()
        left = exported.not_exported(store.db, ["acme"])
        print(f"forget's check: {time.perf_counter() - t:.2f} s (not exported: {left})")
        store.close()


if __name__ == "__main__":
    main()
