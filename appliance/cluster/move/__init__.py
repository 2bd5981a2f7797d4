"""Moving a partition's tenants from one node's store to another's (both nodes stopped).

`export_tenants` writes their rows, still encrypted, and their wrapped data keys
into one SQLCipher file keyed like the store; only a node with the same master
key (the cluster's shared key file) opens it. `import_tenants` copies them into
another store: bucket ids are renumbered (they are key-store row ids), record
ids are kept (they are bound into the records' encryption; each store draws
them from its own range). `forget_tenants` then removes them from the source,
destroying their data keys. Tables are found by their columns (a `tenant`
column, or a `record_id`/`bucket_id`/`topic_id` link), so later migrations'
tables move too.
"""

from __future__ import annotations

from appliance.cluster.move.export import export_tenants
from appliance.cluster.move.forget import forget_tenants
from appliance.cluster.move.importer import import_tenants
from appliance.cluster.move.pick import (
    note_partitions,
    partition_count,
    served_partitions,
    tenants_in,
)
from appliance.cluster.move.tables import KEY_TABLES, NODE_TABLES, MoveReport, Progress

__all__ = ["KEY_TABLES", "NODE_TABLES", "MoveReport", "Progress", "export_tenants",
           "forget_tenants", "import_tenants", "note_partitions", "partition_count",
           "served_partitions", "tenants_in"]
