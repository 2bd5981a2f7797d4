"""Scale-out: tenants partitioned over several appliance nodes through NATS JetStream.

`partition.py` is the pure arithmetic (tenant -> partition, subjects, ranges);
`bus.py` connects to NATS; `stream.py` holds the JetStream stream, the
partitions' consumers and the mapping check; `preflight.py` checks a node can
join before it loads anything; `node.py` is the NATS front door of one node,
feeding the same service queue and pipeline as the Unix socket; `replies.py`
routes replies; `owners.py` keeps one owner per partition; `status.py` reads lag;
`move.py` moves a partition's tenant data between nodes; `client.py` is the
gateways' side. Everything here needs the extra `semtrace[nats]` except the
pure modules.
"""
