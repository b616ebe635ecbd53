-- The groups of identical requests (same user, model and request_hash, two records or more), kept at upload
-- time. Every analysis run needs them first (the duplicate tool, the response cache of the savings plan, the
-- prompt-cache windows); finding them live is an index-only scan of every record of the account (0.5 s of a
-- million-record analysis, on its critical path), reading them is a few thousand rows
-- (functions/agent/intelligence/facts.py, dup_groups). A group's n is recounted from the records for every
-- (model, request_hash) an insert or a delete touches, so it is exact whatever the order of the writes.
CREATE TABLE usage_repeated_requests (
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model        text NOT NULL,
    request_hash text NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (user_id, model, request_hash)
);

-- The records are visible to these triggers (AFTER ... FOR EACH STATEMENT), and under the summaries' per-account
-- lock (0007) no other writer of the account commits between the count and the write. Each touched request is
-- counted through the (user_id, model, request_hash) index (a LATERAL: one index lookup per request), so an
-- upload costs what its own requests cost, never a scan of every tenant's records (which a hash join of a
-- large upload's requests with usage_records would be).
CREATE FUNCTION usage_repeated_requests_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM new_rows ORDER BY 1) AS accounts;
    INSERT INTO usage_repeated_requests AS r
    SELECT t.user_id, t.model, t.request_hash, c.n
      FROM (SELECT DISTINCT user_id, model, request_hash FROM new_rows WHERE request_hash IS NOT NULL) t
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM usage_records u WHERE u.user_id = t.user_id
                            AND u.model = t.model AND u.request_hash = t.request_hash) c
     WHERE c.n > 1
    ON CONFLICT (user_id, model, request_hash) DO UPDATE SET n = EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION usage_repeated_requests_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    DELETE FROM usage_repeated_requests r
     USING (SELECT DISTINCT user_id, model, request_hash FROM old_rows WHERE request_hash IS NOT NULL) t
     WHERE r.user_id = t.user_id AND r.model = t.model AND r.request_hash = t.request_hash;
    INSERT INTO usage_repeated_requests
    SELECT t.user_id, t.model, t.request_hash, c.n
      FROM (SELECT DISTINCT user_id, model, request_hash FROM old_rows WHERE request_hash IS NOT NULL) t
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM usage_records u WHERE u.user_id = t.user_id
                            AND u.model = t.model AND u.request_hash = t.request_hash) c
     WHERE c.n > 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_repeated_requests_insert AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_repeated_requests_insert();
CREATE TRIGGER usage_repeated_requests_delete AFTER DELETE ON usage_records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_repeated_requests_delete();

-- Records stored before this migration.
INSERT INTO usage_repeated_requests
SELECT user_id, model, request_hash, count(*) FROM usage_records
 WHERE request_hash IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1;
