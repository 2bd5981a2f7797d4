"""The data store's (semtrace.db) migrations, in the order they run. Never edit one that
has shipped; append."""

from __future__ import annotations

from typing import Any

from appliance.migrations.runner import migration


@migration
def m001_initial(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE buckets (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            user TEXT NOT NULL,
            day TEXT NOT NULL,
            created_at REAL NOT NULL,
            destroyed_at REAL,
            destroy_reason TEXT,
            UNIQUE (tenant, user, day)
        );
        CREATE TABLE records (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            request_id TEXT NOT NULL,
            user TEXT NOT NULL,
            bucket_id INTEGER NOT NULL REFERENCES buckets(id),
            ts REAL NOT NULL,
            session_key TEXT,
            thread_id TEXT NOT NULL,
            parent_id INTEGER,
            position TEXT NOT NULL,
            intent TEXT,
            similarity REAL,
            score REAL,
            topic_id TEXT,
            model TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            latency_ms REAL,
            status TEXT,
            synthetic INTEGER NOT NULL DEFAULT 0,
            stream_index INTEGER,
            model_id TEXT NOT NULL,
            truncated INTEGER NOT NULL DEFAULT 0,
            text_ct BLOB,
            vector_ct BLOB,
            evidence TEXT,
            feedback TEXT,
            trace_id TEXT,
            span_id TEXT,
            UNIQUE (tenant, request_id)
        );
        CREATE INDEX records_user_ts ON records (tenant, user, ts);
        CREATE INDEX records_thread ON records (thread_id, ts);
        CREATE INDEX records_bucket ON records (bucket_id);
        CREATE TABLE vault (
            record_id INTEGER PRIMARY KEY,
            bucket_id INTEGER NOT NULL,
            ct BLOB NOT NULL
        );
        CREATE INDEX vault_bucket ON vault (bucket_id);
        CREATE TABLE threads (
            thread_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            user TEXT NOT NULL,
            first_ts REAL NOT NULL,
            last_ts REAL NOT NULL,
            turns INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            models TEXT NOT NULL DEFAULT '[]',
            topic_id TEXT
        );
        CREATE INDEX threads_user ON threads (tenant, user, last_ts);
        CREATE INDEX threads_last ON threads (last_ts);
        """
    )


@migration
def m002_audit(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            event TEXT NOT NULL,
            actor TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE audit_checkpoints (
            seq INTEGER PRIMARY KEY,
            hash TEXT NOT NULL,
            key_id TEXT NOT NULL,
            signature TEXT NOT NULL,
            ts REAL NOT NULL
        );
        CREATE TABLE audit_keys (
            key_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """
    )


@migration
def m003_topics(db: Any) -> None:
    # Topic centroids and keyword counts are aggregates; the centroid stays NULL
    # (rebuilt from the encrypted records) until a topic has k contributors.
    db.executescript(
        """
        CREATE TABLE topics (
            topic_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            scope TEXT NOT NULL,
            n INTEGER NOT NULL,
            contributors INTEGER NOT NULL,
            centroid BLOB,
            label TEXT,
            merged_into TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX topics_tenant ON topics (tenant, merged_into);
        CREATE TABLE topic_terms (
            topic_id TEXT NOT NULL,
            term TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (topic_id, term)
        );
        CREATE TABLE privacy_budget (
            tenant TEXT NOT NULL,
            day TEXT NOT NULL,
            spent REAL NOT NULL,
            queries INTEGER NOT NULL,
            PRIMARY KEY (tenant, day)
        );
        CREATE INDEX records_tenant_ts ON records (tenant, ts);
        """
    )


@migration
def m004_entity_keys(db: Any) -> None:
    # keyed digests of the values redacted out of a prompt, sealed under its DEK, so
    # entity overlap still counts for history reloaded after a restart
    db.execute("ALTER TABLE records ADD COLUMN entities_ct BLOB")


@migration
def m005_turn_digests(db: Any) -> None:
    # Keyed digests (HMAC under the pseudonym key, per tenant and user) of each prompt's
    # content, its answer's content and its response id, so a request's message history
    # or previous_response_id finds the turn it continues. Never the content itself.
    # Deleted with their record (shredding, erasure).
    db.executescript(
        """
        CREATE TABLE turn_digests (
            record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            tenant TEXT NOT NULL,
            user TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (record_id, kind)
        ) WITHOUT ROWID;
        CREATE INDEX turn_digests_lookup ON turn_digests (tenant, user, digest);
        """
    )


@migration
def m006_record_id_base(db: Any) -> None:
    # Record ids are bound into each record's encryption (associated data), so a
    # tenant moved to another node keeps them: every new store draws its ids from a
    # random range of 2^32 below 2^53 (JSON-safe), and two nodes' ranges almost never
    # meet (an import checks). A store that already has records keeps counting from 1.
    import secrets

    has_records = db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is not None
    base = 0 if has_records else (secrets.randbelow((1 << 21) - 1) + 1) << 32
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('record_id_base', ?)",
               (str(base),))


@migration
def m007_dp_releases(db: Any) -> None:
    # Differentially private releases (noisy figures per group, no words), cached for
    # the UTC day they were made: repeated queries read them and spend no budget.
    db.executescript(
        """
        CREATE TABLE dp_releases (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            day TEXT NOT NULL,
            created_at REAL NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (tenant, key, day)
        );
        """
    )


@migration
def m008_costs(db: Any) -> None:
    # What each call cost in pricing.toml's currency: reported by the gateway, or its
    # tokens priced when it arrived (cost_source says which); NULL when unknown. A
    # thread's cost sums its turns' known costs (NULL while none is known).
    db.executescript(
        """
        ALTER TABLE records ADD COLUMN cost REAL;
        ALTER TABLE records ADD COLUMN cost_source TEXT;
        ALTER TABLE threads ADD COLUMN cost REAL;
        """
    )


@migration
def m009_bucket_kinds(db: Any) -> None:
    # A bucket is one key: prompts (text, vectors, entity digests) or vault (originals,
    # shorter retention), per (tenant, user, day). Only a live bucket is unique, so a
    # user erased today gets a fresh bucket for today's next prompt. A shredded bucket
    # keeps neither user nor day once retention has anonymised it.
    db.execute("BEGIN")
    db.execute(
        """CREATE TABLE buckets_new (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            user TEXT,
            day TEXT,
            kind TEXT NOT NULL DEFAULT 'prompts',
            created_at REAL NOT NULL,
            destroyed_at REAL,
            destroy_reason TEXT
        )""")
    db.execute("INSERT INTO buckets_new (id, tenant, user, day, created_at, destroyed_at, "
               "destroy_reason) SELECT id, tenant, user, day, created_at, destroyed_at, "
               "destroy_reason FROM buckets")
    db.execute("DROP TABLE buckets")
    db.execute("ALTER TABLE buckets_new RENAME TO buckets")
    db.execute("CREATE UNIQUE INDEX buckets_live ON buckets (tenant, user, day, kind) "
               "WHERE destroyed_at IS NULL")
    db.execute("CREATE INDEX buckets_destroyed ON buckets (destroyed_at)")


@migration
def m010_pseudonym_epochs(db: Any) -> None:
    # Before pseudonym keys were carried across rotations, `keys rotate` changed every
    # pseudonym: buckets created before the last such rotation hold users under
    # pseudonyms no key derives any more, so erasure cannot attribute them.
    row = db.execute("SELECT max(ts) FROM audit WHERE event = 'key_rotation'").fetchone()
    if row is not None and row[0] is not None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) "
                   "VALUES ('pseudonyms_changed_at', ?)", (repr(float(row[0])),))


@migration
def m011_thread_listing_indexes(db: Any) -> None:
    # The threads screen sorts by marks and filters by position over every thread: both
    # probe these per thread instead of reading its turns (query.list_threads_page); each
    # covers its query. records_marked holds only the marked turns; its condition must
    # stay query.pages._MARKS_SQL's, or SQLite will not use it.
    db.executescript(
        """
        CREATE INDEX records_position ON records (position, thread_id);
        CREATE INDEX records_marked ON records (thread_id, status, feedback)
            WHERE feedback IS NOT NULL OR status IN ('error', 'blocked');
        """
    )


@migration
def m012_link_tallies(db: Any) -> None:
    # Per tenant, the content linker's scores on history-linked prompts, counted per score
    # bin (appliance/link/calibrate.py): JSON arrays of counts, no text, ids or users.
    db.execute("CREATE TABLE link_tallies (tenant TEXT PRIMARY KEY, attach TEXT NOT NULL, "
               "new TEXT NOT NULL, updated_at REAL NOT NULL)")


@migration
def m013_erasures(db: Any) -> None:
    # One row per erased (tenant, user pseudonym): prompts of the user sent before the
    # erasure completed (queued in the service, waiting in JetStream) are not stored when
    # they arrive (store/erasures.py). completed_at is NULL while the erasure runs.
    db.execute("CREATE TABLE erasures (tenant TEXT NOT NULL, user TEXT NOT NULL, "
               "started_at REAL NOT NULL, completed_at REAL, PRIMARY KEY (tenant, user))")


@migration
def m014_turn_calls(db: Any) -> None:
    # The calls of a turn's tool loop that carry no user text (a Responses call answering
    # tool calls by previous_response_id alone): each is part of the turn it continues,
    # whichever gateway process saw it. Its figures are kept so a retried update sets them
    # again instead of adding them twice (the turn's record holds the totals). Ids and
    # numbers only; deleted with their record.
    db.executescript(
        """
        CREATE TABLE turn_calls (
            tenant TEXT NOT NULL,
            request_id TEXT NOT NULL,
            record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
            input_tokens INTEGER,
            output_tokens INTEGER,
            latency_ms REAL,
            cost REAL,
            PRIMARY KEY (tenant, request_id)
        ) WITHOUT ROWID;
        CREATE INDEX turn_calls_record ON turn_calls (record_id);
        """
    )


@migration
def m015_turn_digests_per_value(db: Any) -> None:
    # A turn's keyed digests were one per kind: the response id reported by each call of
    # its tool loop replaced the one before, so a call continuing the turn's first response
    # id no longer found it. Every value is kept now (a turn may answer with several
    # response ids and answers). Rebuilt as SQLite's procedure for changing a key says.
    db.executescript(
        """
        CREATE TABLE turn_digests_new (
            record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            tenant TEXT NOT NULL,
            user TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (record_id, kind, digest)
        ) WITHOUT ROWID;
        INSERT INTO turn_digests_new SELECT record_id, kind, tenant, user, digest
            FROM turn_digests;
        DROP TABLE turn_digests;
        ALTER TABLE turn_digests_new RENAME TO turn_digests;
        CREATE INDEX turn_digests_lookup ON turn_digests (tenant, user, digest);
        """
    )
