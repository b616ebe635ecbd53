-- Every request's count, kept at upload time, so no trigger looks records up.
-- 0010 recounted each request a statement touches with one lookup in usage_user_model_request_all. That lookup
-- is only cheap on that index, and the planner picks it from statistics a large upload in flight makes wrong:
-- an ANALYZE (autovacuum's) running meanwhile cannot see the uncommitted rows and stores 0 tuples over their
-- pages. Planned on that, each lookup became a scan of every record of the account (through usage_user_ts): a
-- 5M-row upload ran for hours instead of minutes (docs/PERFORMANCE.md, 2026-12-03). An upsert finds its row
-- through its arbiter index whatever the statistics say, so the counts below are kept by upserts only.
-- Sums only: an insert adds, a delete subtracts, so the counts are exact whatever the order of the writes.
-- The groups of two or more (what the analysis reads) are these rows with n > 1: usage_repeated_requests becomes
-- a view of them, read through a partial index of a few thousand entries.
CREATE TABLE usage_request_counts (
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model        text NOT NULL,
    request_hash text NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (user_id, model, request_hash)
);
CREATE INDEX usage_request_counts_repeated ON usage_request_counts (user_id) INCLUDE (model, request_hash, n)
    WHERE n > 1;

CREATE OR REPLACE FUNCTION usage_repeated_requests_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The summaries' per-account lock (0007): concurrent writers of one account upsert in account order.
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM new_rows ORDER BY 1) AS accounts;
    INSERT INTO usage_request_counts AS c
    SELECT user_id, model, request_hash, count(*) FROM new_rows WHERE request_hash IS NOT NULL GROUP BY 1, 2, 3
    ON CONFLICT (user_id, model, request_hash) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

-- A delete joins its requests to the counts by primary key. The function's settings leave the planner no
-- sequential or bitmap scan, so even on the statistics above that join stays one index lookup per request.
CREATE OR REPLACE FUNCTION usage_repeated_requests_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    UPDATE usage_request_counts c SET n = c.n - o.n
      FROM (SELECT user_id, model, request_hash, count(*) AS n FROM old_rows WHERE request_hash IS NOT NULL
             GROUP BY 1, 2, 3) o
     WHERE c.user_id = o.user_id AND c.model = o.model AND c.request_hash = o.request_hash;
    DELETE FROM usage_request_counts c
     USING (SELECT DISTINCT user_id, model, request_hash FROM old_rows WHERE request_hash IS NOT NULL) o
     WHERE c.n = 0 AND c.user_id = o.user_id AND c.model = o.model AND c.request_hash = o.request_hash;
    RETURN NULL;
END
$$;
ALTER FUNCTION usage_repeated_requests_delete() SET enable_seqscan = off;
ALTER FUNCTION usage_repeated_requests_delete() SET enable_bitmapscan = off;

-- Records stored before this migration.
INSERT INTO usage_request_counts
SELECT user_id, model, request_hash, count(*) FROM usage_records WHERE request_hash IS NOT NULL GROUP BY 1, 2, 3;

-- The stored groups, now derived (their readers are unchanged: functions/agent/intelligence/facts.py).
DROP TABLE usage_repeated_requests;
CREATE VIEW usage_repeated_requests AS
SELECT user_id, model, request_hash, n FROM usage_request_counts WHERE n > 1;
