-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_user_roles_assigned_by;
