-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_refresh_tokens_replaced_by;
