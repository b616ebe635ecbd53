-- Continuous usage ingestion (OTLP traces, LiteLLM callbacks): ingest keys, per-source counters, and what
-- the rollups need to stay fresh while records stream in (docs/INGESTION.md).

-- An ingest key authenticates POST /v1/traces and POST /v1/litellm for one user and nothing else. Only the
-- SHA-256 of the key is stored (the key is 256 random bits, so a plain hash is as strong as a slow one); the
-- prefix identifies it on the page. feature_attribute / end_user_attribute name the span or resource
-- attribute that fills those fields of a record made from a span.
CREATE TABLE ingest_keys (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name               text NOT NULL,
    key_hash           text NOT NULL UNIQUE,
    prefix             text NOT NULL,
    feature_attribute  text,
    end_user_attribute text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_used_at       timestamptz,
    revoked_at         timestamptz
);
CREATE INDEX ingest_keys_user ON ingest_keys(user_id, created_at);

-- Counters per user and source (otlp, litellm), updated in the transaction that stores a batch: the page
-- shows them without counting usage_records.
CREATE TABLE usage_ingest_sources (
    user_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source           text NOT NULL,
    records          bigint NOT NULL DEFAULT 0,
    duplicates       bigint NOT NULL DEFAULT 0,
    ignored          bigint NOT NULL DEFAULT 0,
    rejected         bigint NOT NULL DEFAULT 0,
    last_record_ts   timestamptz,
    last_ingested_at timestamptz,
    PRIMARY KEY (user_id, source)
);

-- live_floor: the data version of the last change that was not a live append (an upload, a delete). A rollup
-- computed from a version at or above it misses only records ingested since, so it may be served while it
-- is younger than a minute; below it, never. rollup_requested_at: when ingestion last asked for a refresh.
ALTER TABLE usage_state
    ADD COLUMN live_floor          bigint NOT NULL DEFAULT 0,
    ADD COLUMN rollup_requested_at timestamptz;
UPDATE usage_state SET live_floor = version;
