"""What `semtrace doctor` checks of a node of a cluster (`url` in cluster.toml): what
`serve` would refuse at start, said in the same sentences, before anyone restarts it.

Before, doctor read cluster.toml only as a policy file: a bus key file other users could
read, a missing one, a credentials file left open, no `nats` extra, or no NATS server at
the URL all passed as "No problems found.", and the node then refused to start."""

from __future__ import annotations

from typing import Any

NATS_CHECK_S = 5.0  # a doctor waits no longer for NATS


def cluster_problems(cluster: Any) -> tuple[list[str], list[str]]:
    """(problems, warnings) of this host's node of a cluster; none without a URL."""
    from appliance.errors import SemtraceError

    if not cluster.url:
        return [], []
    from appliance.cluster.bus import connect_options, require_nats
    from appliance.keys.bus import NODE_NEEDS_KEY, bus_warning, load_bus_keys, require_sealing

    sec = cluster.security
    problems: list[str] = []
    try:
        require_nats()
    except SemtraceError as exc:
        return [str(exc)], []  # nothing below can be checked without it
    for check in (lambda: require_sealing(bool(sec.bus_key_file), sec.plain_bus,
                                          NODE_NEEDS_KEY),
                  lambda: sec.bus_key_file and load_bus_keys(sec.bus_key_file),
                  lambda: connect_options(sec)):  # credential and TLS files, their modes
        try:
            check()
        except SemtraceError as exc:
            problems.append(str(exc))
    if not problems:  # NATS asked only with what serve would connect with
        problems += _nats(cluster)
    warning = bus_warning(sec.plain_bus, sec.accept_plain)
    return problems, [warning] if warning else []


def _nats(cluster: Any) -> list[str]:
    """What the server says of this node joining: it answers, maps the node's partition
    count and holds a stream of that count (no claim is taken, nothing is written)."""
    from appliance.cluster import bus
    from appliance.cluster.stream import check_mapping, check_stream
    from appliance.config.cluster import shown_url
    from appliance.errors import SemtraceError

    async def ask() -> None:
        nc = await bus.connect(cluster.url, cluster.security, name="semtrace-doctor",
                               reconnect=False, within=NATS_CHECK_S)
        try:
            await check_mapping(nc, cluster.partitions)
            await check_stream(nc.jetstream(), cluster)
        finally:
            await nc.close()

    try:
        bus.run(ask())
    except SemtraceError as exc:
        return [str(exc)]
    except Exception as exc:  # doctor reports, it does not crash
        return [f"NATS at {shown_url(cluster.url)} could not be checked ({type(exc).__name__}): is "
                "JetStream enabled there, and may this node's NATS user publish to "
                "$JS.API.>?"]
    return []
