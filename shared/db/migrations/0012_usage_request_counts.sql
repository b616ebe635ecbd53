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

-- The accounts a delete left without any record (a user deleting all their data): their summary rows go at
-- once, by account, instead of being subtracted one group at a time (the delete triggers here and in 0013).
-- Given the distinct accounts as an array, it probes each once: as a per-row condition, the planner pushed the
-- probe down to every deleted record, and a full delete walked the account's million index entries (deleted,
-- still there until vacuum) once per record.
CREATE FUNCTION usage_emptied_accounts(accounts uuid[]) RETURNS uuid[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    account uuid;
    emptied uuid[] := '{}';
BEGIN
    FOREACH account IN ARRAY accounts LOOP
        IF NOT EXISTS (SELECT 1 FROM usage_records WHERE user_id = account) THEN
            emptied := emptied || account;
        END IF;
    END LOOP;
    RETURN emptied;
END
$$;

CREATE OR REPLACE FUNCTION usage_repeated_requests_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    emptied uuid[];
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    emptied := usage_emptied_accounts(ARRAY(SELECT DISTINCT user_id FROM old_rows));
    DELETE FROM usage_request_counts WHERE user_id = ANY (emptied);
    -- The same upsert, negated: no join for the planner to get wrong (a join on the key, planned on the
    -- statistics above, ran as a nested loop over the whole index: deleting half of a million records never
    -- finished). Every deleted request was counted when it was inserted, so each finds its row.
    INSERT INTO usage_request_counts AS c
    SELECT user_id, model, request_hash, -count(*) FROM old_rows
     WHERE request_hash IS NOT NULL AND user_id <> ALL (emptied)
     GROUP BY 1, 2, 3
    ON CONFLICT (user_id, model, request_hash) DO UPDATE SET n = c.n + EXCLUDED.n;
    DELETE FROM usage_request_counts
     WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows WHERE user_id <> ALL (emptied));
    RETURN NULL;
END
$$;

-- Records stored before this migration.
INSERT INTO usage_request_counts
SELECT user_id, model, request_hash, count(*) FROM usage_records WHERE request_hash IS NOT NULL GROUP BY 1, 2, 3;

-- The stored groups, now derived (their readers are unchanged: functions/agent/intelligence/facts.py).
DROP TABLE usage_repeated_requests;
CREATE VIEW usage_repeated_requests AS
SELECT user_id, model, request_hash, n FROM usage_request_counts WHERE n > 1;
