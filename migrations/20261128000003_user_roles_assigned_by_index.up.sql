-- no-transaction
-- FIX 11 (second part): `user_roles.assigned_by` (ON DELETE SET NULL) had no
-- index either: every purge of a user scanned user_roles.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_user_roles_assigned_by
    ON user_roles (assigned_by) WHERE assigned_by IS NOT NULL;
