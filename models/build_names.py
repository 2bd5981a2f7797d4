"""Build the bundled name list from names-dataset (MIT), at build time only.

    pip install 'names-dataset>=3.3.1,<3.4'   # the `dev` extra
    python models/build_names.py --rank 6000

Writes models/names-rank<N>.json.gz (deterministic gzip); the appliance reads it
at run time instead of unpickling the 55 MB dataset.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    from appliance.redact.gazetteer import build_names

    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=6000)
    args = ap.parse_args()
    out = HERE / f"names-rank{args.rank}.json.gz"
    build_names(args.rank, out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
