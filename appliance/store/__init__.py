"""The encrypted store: SQLCipher data and key files, envelope encryption, shredding.

`core` holds the connections, buckets and their DEKs, `writes` the write path,
`reads` the read path, `turns` the history digests, `maintenance` the
destructive operations (shredding, re-embedding, compaction) and `rotation`
the re-keying of both files.
"""

from appliance.store.core import DB_FILE, KEYS_FILE, Store, connect
from appliance.store.maintenance import (
    VECTOR_DTYPE,
    Maintenance,
    ShredResult,
    _aad,
    _bucket_aad,
    day_of,
)

__all__ = ["DB_FILE", "KEYS_FILE", "VECTOR_DTYPE", "Maintenance", "ShredResult", "Store",
           "_aad", "_bucket_aad", "connect", "day_of"]
