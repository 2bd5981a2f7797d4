"""Tenants -> partitions and the subjects of the bus. Pure: no I/O, no NATS.

The partition of a tenant is FNV-1a (32 bit) of its name modulo the number of
partitions: the same function as nats-server's `partition()` subject mapping,
so the server routes `semtrace.ingest.<tenant>` to `semtrace.part.<p>.<tenant>`
and a node computes the same `p` for status and for moving data.
"""

from __future__ import annotations

import re

INGEST_PREFIX = "semtrace.ingest"
PART_PREFIX = "semtrace.part"
ENRICHED_PREFIX = "semtrace.enriched"
PROBE_PREFIX = "semtrace.probe"
PROBED_PREFIX = "semtrace.probed"
OWNERS_BUCKET = "semtrace_owners"
ERASURES_BUCKET = "semtrace_erasures"  # erasure requests for a tenant's owner
# A tenant is one subject token: no dots, wildcards or white space.
TENANT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bit."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(tenant: str, partitions: int) -> int:
    """The partition that owns `tenant` (as nats-server's `partition(n, 1)` maps it)."""
    return fnv1a32(tenant.encode("utf-8")) % partitions


def valid_tenant(tenant: str) -> bool:
    """Whether `tenant` can travel as one NATS subject token."""
    return bool(TENANT_TOKEN.match(tenant))


def parse_own(spec: str, partitions: int) -> list[int]:
    """"0-3,8" -> [0, 1, 2, 3, 8]; ValueError with one sentence if malformed or out of range."""
    owned: set[int] = set()
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"'{spec}' is not a partition range such as 0-3 or 0-3,8")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi:
            raise ValueError(f"'{part.strip()}' runs backwards")
        if hi >= partitions:
            raise ValueError(f"partition {hi} does not exist: there are {partitions} "
                             f"(0-{partitions - 1})")
        owned.update(range(lo, hi + 1))
    return sorted(owned)


def format_ranges(parts: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out: list[str] = []
    for p in sorted(set(parts)):
        if out and out[-1].split("-")[-1] == str(p - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ",".join(out)


def ingest_subject(tenant: str) -> str:
    return f"{INGEST_PREFIX}.{tenant}"


def enriched_subject(tenant: str) -> str:
    return f"{ENRICHED_PREFIX}.{tenant}"


def part_subject(partition: int | str, tenant: str = "*") -> str:
    return f"{PART_PREFIX}.{partition}.{tenant}"


def split_part_subject(subject: str) -> tuple[int, str] | None:
    """`semtrace.part.<p>.<tenant>` -> (p, tenant); None for anything else."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) != PART_PREFIX or not parts[2].isdigit():
        return None
    return int(parts[2]), parts[3]


def consumer_name(stream: str, partition: int) -> str:
    """The durable pull consumer of one partition (one per partition, whoever owns it)."""
    return f"{stream}-p{partition}"


def server_mappings(partitions: int) -> str:
    """The nats-server configuration block that partitions the ingest subjects."""
    return (
        "mappings = {\n"
        f'  "{INGEST_PREFIX}.*": "{PART_PREFIX}.{{{{partition({partitions},1)}}}}'
        '.{{wildcard(1)}}"\n'
        f'  "{PROBE_PREFIX}.*": "{PROBED_PREFIX}.{{{{partition({partitions},1)}}}}'
        '.{{wildcard(1)}}"\n'
        "}\n")
