"""Ordered, recorded schema migrations. Never edit one that has shipped; append.

`runner.py` applies them (each in its own transaction, recorded by the function's
name); the data store's are in `datastore.py`, the key store's in `keystore.py`,
registered in order when this package is imported.
"""

from appliance.migrations import datastore, keystore
from appliance.migrations.runner import (
    KEY_MIGRATIONS,
    MIGRATIONS,
    Migration,
    applied,
    latest,
    migrate,
    migration,
    pending,
    refuse_newer,
)

__all__ = ["KEY_MIGRATIONS", "MIGRATIONS", "Migration", "applied", "datastore", "keystore",
           "latest", "migrate", "migration", "pending", "refuse_newer"]
