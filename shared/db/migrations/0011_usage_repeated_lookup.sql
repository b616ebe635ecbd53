-- The repeated requests (usage_repeated_requests, 0010) are looked up by (user, model, request_hash) three times
-- in a full analysis: the duplicate tool, the savings plan's response cache and the prompt-cache windows they
-- touch (functions/agent/intelligence/facts.py). With every column those lookups read in the index, they are
-- index-only once the table is vacuumed, instead of one heap page per repeated record (50,000 random page reads
-- per lookup on the million-record benchmark). It replaces 0004's index, which held the token counts only.
CREATE INDEX usage_user_model_request_all ON usage_records(user_id, model, request_hash)
    INCLUDE (input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, ts, feature,
             interactive, prefix_hash, prefix_tokens)
    WHERE request_hash IS NOT NULL;
DROP INDEX usage_user_model_request;
