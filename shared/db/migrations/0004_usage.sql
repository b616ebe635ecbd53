-- Optimization intelligence: what the analysis tools need beyond the usage_records of 0001.

-- prefix_tokens: tokens of the shared prompt prefix named by prefix_hash (prompt caching analysis);
-- request_hash: hash of the whole request (model, messages, parameters) for exact-duplicate detection.
ALTER TABLE usage_records
    ADD COLUMN prefix_tokens integer,
    ADD COLUMN request_hash  text;

-- One row per accepted upload part (the records point at it through upload_id).
CREATE TABLE usage_uploads (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    format         text NOT NULL,
    part           integer,
    rows_received  integer NOT NULL,
    rows_inserted  integer NOT NULL,
    rows_duplicate integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_uploads_user ON usage_uploads(user_id, created_at);

-- A per-user data version, bumped by every upload and delete in the same transaction: precomputed
-- analyses (usage_rollups) are valid only for the version they were computed from.
CREATE TABLE usage_state (
    user_id    uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    version    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Results of the analysis tools written by the rollup job (functions/agent/rollup_job.py) and read by the tools.
CREATE TABLE usage_rollups (
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tool         text NOT NULL,
    args_key     text NOT NULL,
    data_version bigint NOT NULL,
    result       jsonb NOT NULL,
    computed_ms  integer NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tool, args_key)
);

-- The exact-duplicate analysis groups by (model, request_hash): this index returns the rows already in that
-- order with their token counts, so the scan is index-only (no sort, no heap) once the table is vacuumed.
CREATE INDEX usage_user_model_request ON usage_records(user_id, model, request_hash)
    INCLUDE (input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens)
    WHERE request_hash IS NOT NULL;
