-- Prompt-cache windows kept at upload time, for the caching tool and the savings plan
-- (functions/agent/intelligence/facts.py, _CACHE_FROM_WINDOWS). Per (user, model, feature, interactive, prefix,
-- 5-minute window of the epoch): the requests carrying that prefix and their cacheable prefix tokens. Live, the
-- analysis hashed every prefixed record into these windows at each run (~630k windows for a million records:
-- most of the 3 s goal of issue 16); it now reads them, and looks at records only where a window is not uniform:
-- one holding a repeated request (a response cache's weights change with every upload) or a prompt above
-- 100,000 tokens (its long-context tier depends on the price data). Other cache lifetimes read the records.
-- Sums only, so an insert adds and a delete subtracts; no price is kept (a price refresh needs no rebuild).
-- win is floor(epoch / 300) exactly as the records' query computes it (float8), stored as bigint.
CREATE TABLE usage_prefix_windows (
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model         text NOT NULL,
    feature       text,
    interactive   boolean,
    prefix_hash   text NOT NULL,
    prefix_tokens integer NOT NULL,
    win           bigint NOT NULL,
    n             bigint NOT NULL,
    s             bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, model, feature, interactive, prefix_hash, prefix_tokens, win)
);

-- The prefixed records above the summaries' 100,000-token floor: the analysis reads them to split their windows
-- by long-context tier. A handful per account; the index keeps that lookup off the table scan.
CREATE INDEX usage_records_big_prefixed ON usage_records (user_id)
    WHERE prefix_hash IS NOT NULL AND prefix_tokens IS NOT NULL
      AND input_tokens + cached_input_tokens + cache_write_tokens > 100000;

-- The cacheable tokens of a record are facts.CACHEABLE (prefix tokens not already read from or written to a
-- cache); the same expression is written in the three statements below and in facts.py.
CREATE FUNCTION usage_prefix_windows_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The summaries' per-account lock (0007): concurrent writers of one account upsert in account order.
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM new_rows ORDER BY 1) AS accounts;
    INSERT INTO usage_prefix_windows AS p
    SELECT u.user_id, u.model, u.feature, u.interactive, u.prefix_hash, u.prefix_tokens,
           floor(date_part('epoch', u.ts) / 300)::bigint, count(*),
           sum(LEAST(GREATEST(u.prefix_tokens - u.cached_input_tokens - u.cache_write_tokens, 0), u.input_tokens))
      FROM new_rows u
     WHERE u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (user_id, model, feature, interactive, prefix_hash, prefix_tokens, win)
    DO UPDATE SET n = p.n + EXCLUDED.n, s = p.s + EXCLUDED.s;
    RETURN NULL;
END
$$;

CREATE FUNCTION usage_prefix_windows_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7270202, hashtext(user_id::text))
       FROM (SELECT DISTINCT user_id FROM old_rows ORDER BY 1) AS accounts;
    UPDATE usage_prefix_windows p SET n = p.n - o.n, s = p.s - o.s
      FROM (SELECT u.user_id, u.model, u.feature, u.interactive, u.prefix_hash, u.prefix_tokens,
                   floor(date_part('epoch', u.ts) / 300)::bigint AS win, count(*) AS n,
                   sum(LEAST(GREATEST(u.prefix_tokens - u.cached_input_tokens - u.cache_write_tokens, 0),
                             u.input_tokens)) AS s
              FROM old_rows u
             WHERE u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
             GROUP BY 1, 2, 3, 4, 5, 6, 7) o
     WHERE p.user_id = o.user_id AND p.model = o.model AND p.feature IS NOT DISTINCT FROM o.feature
       AND p.interactive IS NOT DISTINCT FROM o.interactive AND p.prefix_hash = o.prefix_hash
       AND p.prefix_tokens = o.prefix_tokens AND p.win = o.win;
    DELETE FROM usage_prefix_windows WHERE n = 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    RETURN NULL;
END
$$;

CREATE TRIGGER usage_prefix_windows_insert AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_prefix_windows_insert();
CREATE TRIGGER usage_prefix_windows_delete AFTER DELETE ON usage_records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_prefix_windows_delete();

-- Records stored before this migration.
INSERT INTO usage_prefix_windows
SELECT u.user_id, u.model, u.feature, u.interactive, u.prefix_hash, u.prefix_tokens,
       floor(date_part('epoch', u.ts) / 300)::bigint, count(*),
       sum(LEAST(GREATEST(u.prefix_tokens - u.cached_input_tokens - u.cache_write_tokens, 0), u.input_tokens))
  FROM usage_records u
 WHERE u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
 GROUP BY 1, 2, 3, 4, 5, 6, 7;
