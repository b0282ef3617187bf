-- no-transaction
-- FIX 11: `refresh_tokens.replaced_by` (ON DELETE SET NULL, a self-reference)
-- had no index, so deleting one token made PostgreSQL scan the whole table for
-- rows pointing at it. The nightly cleanup deletes expired tokens in batches
-- of 5,000: with 3 M tokens one batch ran for more than 8 minutes (found by
-- the cleanup-at-scale benchmark). Built concurrently so that applying it to
-- a live table does not block logins and refreshes (one statement per file:
-- CONCURRENTLY cannot share a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_refresh_tokens_replaced_by
    ON refresh_tokens (replaced_by) WHERE replaced_by IS NOT NULL;
