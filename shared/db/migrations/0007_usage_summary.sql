-- Summaries of usage_records maintained in the transaction that writes the records (statement triggers with
-- transition tables: every insert path - upload, live ingestion, SQL loads - and every delete, cascades
-- included). The analysis reads them instead of scanning the records (docs/PERFORMANCE.md, "Analysis of
-- 1M records live"). They hold no price: the analysis prices them at query time, so a price refresh needs
-- no rebuild.

-- Per (user, UTC day, model, provider, feature, interactive, status ok): requests, token sums and what the
-- tools read (largest prompt and answer, max_tokens sum, first/last call, records carrying each optional
-- field). big_prompt keeps the exact prompt size of requests above 100,000 tokens (0 below): the analysis
-- compares it with each model's long-context threshold, so the split is exact for thresholds of 100,000
-- tokens and up (functions/agent/intelligence/facts.py falls back to the records below that). The same
-- aggregate is written three times below (inserted rows, a day's remaining rows, the backfill): a trigger's
-- transition table is visible only to the trigger function's own statements.
CREATE TABLE usage_day_segments (
    user_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day                date NOT NULL,
    model              text NOT NULL,
    provider           text NOT NULL,
    feature            text,
    interactive        boolean,
    ok                 boolean NOT NULL,
    big_prompt         bigint NOT NULL,
    n                  bigint NOT NULL,
    i                  bigint NOT NULL,
    c                  bigint NOT NULL,
    w                  bigint NOT NULL,
    o                  bigint NOT NULL,
    rs                 bigint NOT NULL,
    max_prompt         bigint NOT NULL,
    max_output         bigint NOT NULL,
    sum_max_tokens     bigint NOT NULL,
    first_ts           timestamptz NOT NULL,
    last_ts            timestamptz NOT NULL,
    has_feature        bigint NOT NULL,
    has_end_user       bigint NOT NULL,
    has_prefix_hash    bigint NOT NULL,
    has_prefix_tokens  bigint NOT NULL,
    has_request_hash   bigint NOT NULL,
    has_interactive    bigint NOT NULL,
    has_latency_ms     bigint NOT NULL,
    has_max_tokens     bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, day, model, provider, feature, interactive, ok, big_prompt)
);

-- Per (user, end user, model, UTC month, big_prompt as above): requests and token sums, for the cost per end
-- user. Priced per month, exact where no price period starts inside a month (else the records are read).
CREATE TABLE usage_end_user_months (
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    end_user   text,
    model      text NOT NULL,
    month      date NOT NULL,
    big_prompt bigint NOT NULL,
    n          bigint NOT NULL,
    i          bigint NOT NULL,
    c          bigint NOT NULL,
    w          bigint NOT NULL,
    o          bigint NOT NULL,
    rs         bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, end_user, model, month, big_prompt)
);

-- Per (user, model, latency): requests and failures. Exact percentiles (percentile_cont) follow from the counts.
CREATE TABLE usage_latency_counts (
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model      text NOT NULL,
    latency_ms integer,
    n          bigint NOT NULL,
    errors     bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, model, latency_ms)
);

CREATE FUNCTION usage_summaries_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One summary writer per account at a time, taken in account order: concurrent writers of one account (an
    -- upload beside a live-ingestion batch) upsert the same summary rows in hash order and would otherwise
    -- deadlock; with the lock the second waits for the first's transaction to end.
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM new_rows ORDER BY 1) AS accounts;
    INSERT INTO usage_day_segments AS s
    SELECT u.user_id, (u.ts AT TIME ZONE 'UTC')::date, u.model, u.provider, u.feature, u.interactive,
           u.status = 'ok',
           CASE WHEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens > 100000
                THEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens ELSE 0 END,
           count(*), sum(u.input_tokens), sum(u.cached_input_tokens), sum(u.cache_write_tokens),
           sum(u.output_tokens), sum(u.reasoning_tokens),
           max(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens), max(u.output_tokens),
           COALESCE(sum(u.max_tokens), 0), min(u.ts), max(u.ts),
           count(u.feature), count(u.end_user), count(u.prefix_hash), count(u.prefix_tokens),
           count(u.request_hash), count(u.interactive), count(u.latency_ms), count(u.max_tokens)
      FROM new_rows u
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT (user_id, day, model, provider, feature, interactive, ok, big_prompt) DO UPDATE SET
        n = s.n + EXCLUDED.n, i = s.i + EXCLUDED.i, c = s.c + EXCLUDED.c, w = s.w + EXCLUDED.w,
        o = s.o + EXCLUDED.o, rs = s.rs + EXCLUDED.rs,
        max_prompt = GREATEST(s.max_prompt, EXCLUDED.max_prompt),
        max_output = GREATEST(s.max_output, EXCLUDED.max_output),
        sum_max_tokens = s.sum_max_tokens + EXCLUDED.sum_max_tokens,
        first_ts = LEAST(s.first_ts, EXCLUDED.first_ts), last_ts = GREATEST(s.last_ts, EXCLUDED.last_ts),
        has_feature = s.has_feature + EXCLUDED.has_feature,
        has_end_user = s.has_end_user + EXCLUDED.has_end_user,
        has_prefix_hash = s.has_prefix_hash + EXCLUDED.has_prefix_hash,
        has_prefix_tokens = s.has_prefix_tokens + EXCLUDED.has_prefix_tokens,
        has_request_hash = s.has_request_hash + EXCLUDED.has_request_hash,
        has_interactive = s.has_interactive + EXCLUDED.has_interactive,
        has_latency_ms = s.has_latency_ms + EXCLUDED.has_latency_ms,
        has_max_tokens = s.has_max_tokens + EXCLUDED.has_max_tokens;
    INSERT INTO usage_latency_counts AS l
    SELECT user_id, model, latency_ms, count(*), count(*) FILTER (WHERE status <> 'ok')
      FROM new_rows GROUP BY 1, 2, 3
    ON CONFLICT (user_id, model, latency_ms) DO UPDATE SET n = l.n + EXCLUDED.n, errors = l.errors + EXCLUDED.errors;
    INSERT INTO usage_end_user_months AS m
    SELECT user_id, end_user, model, date_trunc('month', ts AT TIME ZONE 'UTC')::date,
           CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens > 100000
                THEN input_tokens + cached_input_tokens + cache_write_tokens ELSE 0 END,
           count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(output_tokens),
           sum(reasoning_tokens)
      FROM new_rows GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (user_id, end_user, model, month, big_prompt) DO UPDATE SET
        n = m.n + EXCLUDED.n, i = m.i + EXCLUDED.i, c = m.c + EXCLUDED.c, w = m.w + EXCLUDED.w,
        o = m.o + EXCLUDED.o, rs = m.rs + EXCLUDED.rs;
    RETURN NULL;
END
$$;

-- A delete cannot take a maximum or a first call back: the (user, day) pairs it touched are summed again
-- from the records left (index usage_user_ts). Latency counts are subtracted.
CREATE FUNCTION usage_summaries_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One summary writer per account at a time, taken in account order: concurrent writers of one account (an
    -- upload beside a live-ingestion batch) upsert the same summary rows in hash order and would otherwise
    -- deadlock; with the lock the second waits for the first's transaction to end.
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    DELETE FROM usage_day_segments s
     USING (SELECT DISTINCT user_id, (ts AT TIME ZONE 'UTC')::date AS day FROM old_rows) t
     WHERE s.user_id = t.user_id AND s.day = t.day;
    INSERT INTO usage_day_segments
    SELECT u.user_id, (u.ts AT TIME ZONE 'UTC')::date, u.model, u.provider, u.feature, u.interactive,
           u.status = 'ok',
           CASE WHEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens > 100000
                THEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens ELSE 0 END,
           count(*), sum(u.input_tokens), sum(u.cached_input_tokens), sum(u.cache_write_tokens),
           sum(u.output_tokens), sum(u.reasoning_tokens),
           max(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens), max(u.output_tokens),
           COALESCE(sum(u.max_tokens), 0), min(u.ts), max(u.ts),
           count(u.feature), count(u.end_user), count(u.prefix_hash), count(u.prefix_tokens),
           count(u.request_hash), count(u.interactive), count(u.latency_ms), count(u.max_tokens)
      FROM usage_records u
      JOIN (SELECT DISTINCT user_id, (ts AT TIME ZONE 'UTC')::date AS day FROM old_rows) t ON u.user_id = t.user_id
           AND u.ts >= (t.day::timestamp AT TIME ZONE 'UTC') AND u.ts < ((t.day + 1)::timestamp AT TIME ZONE 'UTC')
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    UPDATE usage_latency_counts l SET n = l.n - o.n, errors = l.errors - o.errors
      FROM (SELECT user_id, model, latency_ms, count(*) AS n, count(*) FILTER (WHERE status <> 'ok') AS errors
              FROM old_rows GROUP BY 1, 2, 3) o
     WHERE l.user_id = o.user_id AND l.model = o.model AND l.latency_ms IS NOT DISTINCT FROM o.latency_ms;
    DELETE FROM usage_latency_counts WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    UPDATE usage_end_user_months m
       SET n = m.n - o.n, i = m.i - o.i, c = m.c - o.c, w = m.w - o.w, o = m.o - o.o, rs = m.rs - o.rs
      FROM (SELECT user_id, end_user, model, date_trunc('month', ts AT TIME ZONE 'UTC')::date AS month,
                   CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens > 100000
                        THEN input_tokens + cached_input_tokens + cache_write_tokens ELSE 0 END AS big_prompt,
                   count(*) AS n, sum(input_tokens) AS i, sum(cached_input_tokens) AS c, sum(cache_write_tokens) AS w,
                   sum(output_tokens) AS o, sum(reasoning_tokens) AS rs
              FROM old_rows GROUP BY 1, 2, 3, 4, 5) o
     WHERE m.user_id = o.user_id AND m.end_user IS NOT DISTINCT FROM o.end_user AND m.model = o.model
       AND m.month = o.month AND m.big_prompt = o.big_prompt;
    DELETE FROM usage_end_user_months WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_summaries_insert AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_summaries_insert();
CREATE TRIGGER usage_summaries_delete AFTER DELETE ON usage_records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_summaries_delete();
-- Records are never updated in place; one that were would leave the summaries wrong, so it is refused.
CREATE FUNCTION usage_records_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage_records are not updated in place: delete and insert';
END
$$;
CREATE TRIGGER usage_records_no_update BEFORE UPDATE ON usage_records
    FOR EACH STATEMENT EXECUTE FUNCTION usage_records_no_update();

-- Records stored before this migration.
INSERT INTO usage_day_segments
SELECT u.user_id, (u.ts AT TIME ZONE 'UTC')::date, u.model, u.provider, u.feature, u.interactive, u.status = 'ok',
       CASE WHEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens > 100000
            THEN u.input_tokens + u.cached_input_tokens + u.cache_write_tokens ELSE 0 END,
       count(*), sum(u.input_tokens), sum(u.cached_input_tokens), sum(u.cache_write_tokens),
       sum(u.output_tokens), sum(u.reasoning_tokens),
       max(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens), max(u.output_tokens),
       COALESCE(sum(u.max_tokens), 0), min(u.ts), max(u.ts),
       count(u.feature), count(u.end_user), count(u.prefix_hash), count(u.prefix_tokens),
       count(u.request_hash), count(u.interactive), count(u.latency_ms), count(u.max_tokens)
  FROM usage_records u
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
INSERT INTO usage_latency_counts
SELECT user_id, model, latency_ms, count(*), count(*) FILTER (WHERE status <> 'ok')
  FROM usage_records GROUP BY 1, 2, 3;
INSERT INTO usage_end_user_months
SELECT user_id, end_user, model, date_trunc('month', ts AT TIME ZONE 'UTC')::date,
       CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens > 100000
            THEN input_tokens + cached_input_tokens + cache_write_tokens ELSE 0 END,
       count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(output_tokens),
       sum(reasoning_tokens)
  FROM usage_records GROUP BY 1, 2, 3, 4, 5;
