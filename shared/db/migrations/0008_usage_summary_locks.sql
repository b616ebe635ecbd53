-- The summary triggers of 0007 take a per-account transaction lock before upserting: concurrent writers of
-- one account (an upload and a live-ingestion batch) upsert the same summary rows in hash order, which could
-- deadlock; with the lock they queue for the rest of the shorter transaction.

CREATE OR REPLACE FUNCTION usage_summaries_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One summary writer per account at a time, taken in account order: two transactions upserting the same
    -- summary rows in different orders would otherwise deadlock (an upload beside a live-ingestion batch).
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

CREATE OR REPLACE FUNCTION usage_summaries_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One summary writer per account at a time, taken in account order: two transactions upserting the same
    -- summary rows in different orders would otherwise deadlock (an upload beside a live-ingestion batch).
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
