-- A delete subtracts from the summaries with the same upsert as an insert adds, negated. 0007 and 0009
-- subtracted with UPDATE ... FROM joins whose nullable keys (feature, interactive, end_user, latency_ms) were
-- matched with IS NOT DISTINCT FROM, which no hash or merge join can use as a key: on a million records the
-- planner merged on the leading columns only and compared every window of a (user, model) with every deleted
-- one. Deleting every other record of a million (an upload interleaved in time with another) had not finished
-- after 13 minutes; with this migration it takes 25-33 s (docs/PERFORMANCE.md, "Large deletes"). An upsert
-- finds each row through the table's unique index (NULLS NOT DISTINCT, as the inserts use it), whatever the
-- plan, and every deleted record was added when it was inserted, so each finds its row. Rows whose count
-- reaches 0 are removed afterwards, as before. The day segments are summed again over one range of days per
-- account (see below).

CREATE OR REPLACE FUNCTION usage_prefix_windows_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    emptied uuid[];
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    -- Accounts left without records go at once (0012, usage_emptied_accounts).
    emptied := usage_emptied_accounts(ARRAY(SELECT DISTINCT user_id FROM old_rows));
    DELETE FROM usage_prefix_windows WHERE user_id = ANY (emptied);
    INSERT INTO usage_prefix_windows AS p
    SELECT u.user_id, u.model, u.feature, u.interactive, u.prefix_hash, u.prefix_tokens,
           floor(date_part('epoch', u.ts) / 300)::bigint, -count(*),
           -sum(LEAST(GREATEST(u.prefix_tokens - u.cached_input_tokens - u.cache_write_tokens, 0), u.input_tokens))
      FROM old_rows u
     WHERE u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL AND u.user_id <> ALL (emptied)
     GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (user_id, model, feature, interactive, prefix_hash, prefix_tokens, win)
    DO UPDATE SET n = p.n + EXCLUDED.n, s = p.s + EXCLUDED.s;
    DELETE FROM usage_prefix_windows
     WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows WHERE user_id <> ALL (emptied));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION usage_summaries_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One summary writer per account at a time, taken in account order (0007).
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    -- A maximum or a first call cannot be subtracted: the days from the first to the last the delete touched
    -- are summed again. One range per account (not a join on each day, which the planner merged on user_id
    -- alone, comparing every record of the account with every touched day); untouched days in between come
    -- out as they were.
    DELETE FROM usage_day_segments s
     USING (SELECT user_id, min((ts AT TIME ZONE 'UTC')::date) AS lo, max((ts AT TIME ZONE 'UTC')::date) AS hi
              FROM old_rows GROUP BY 1) t
     WHERE s.user_id = t.user_id AND s.day BETWEEN t.lo AND t.hi;
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
      JOIN (SELECT user_id, min((ts AT TIME ZONE 'UTC')::date) AS lo, max((ts AT TIME ZONE 'UTC')::date) AS hi
              FROM old_rows GROUP BY 1) t ON u.user_id = t.user_id
           AND u.ts >= (t.lo::timestamp AT TIME ZONE 'UTC') AND u.ts < ((t.hi + 1)::timestamp AT TIME ZONE 'UTC')
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    INSERT INTO usage_latency_counts AS l
    SELECT user_id, model, latency_ms, -count(*), -count(*) FILTER (WHERE status <> 'ok')
      FROM old_rows GROUP BY 1, 2, 3
    ON CONFLICT (user_id, model, latency_ms) DO UPDATE SET n = l.n + EXCLUDED.n, errors = l.errors + EXCLUDED.errors;
    DELETE FROM usage_latency_counts WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    INSERT INTO usage_end_user_months AS m
    SELECT user_id, end_user, model, date_trunc('month', ts AT TIME ZONE 'UTC')::date,
           CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens > 100000
                THEN input_tokens + cached_input_tokens + cache_write_tokens ELSE 0 END,
           -count(*), -sum(input_tokens), -sum(cached_input_tokens), -sum(cache_write_tokens), -sum(output_tokens),
           -sum(reasoning_tokens)
      FROM old_rows GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (user_id, end_user, model, month, big_prompt) DO UPDATE SET
        n = m.n + EXCLUDED.n, i = m.i + EXCLUDED.i, c = m.c + EXCLUDED.c, w = m.w + EXCLUDED.w,
        o = m.o + EXCLUDED.o, rs = m.rs + EXCLUDED.rs;
    DELETE FROM usage_end_user_months WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    RETURN NULL;
END
$$;
