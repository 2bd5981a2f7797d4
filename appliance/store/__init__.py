"""The encrypted store: SQLCipher data and key files, envelope encryption, shredding.

`core` holds the connection and the write/read path, `maintenance` the
destructive operations (shredding, rotation, re-embedding, compaction).
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
