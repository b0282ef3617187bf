-- Privileges: restore brings back the status a user had before the delete,
-- and the API functions connect as a role that cannot alter the audit trail.

-- Soft delete remembers the status it replaced; restore puts it back
-- (a suspended user stays suspended after a delete and a restore).
ALTER TABLE users ADD COLUMN status_before_delete user_status;

-- Rows deleted before this migration: the status their delete replaced is
-- in the audit trail (the users trigger records it); restore falls back to
-- 'inactive' (an admin decides) where it is not.
UPDATE users u
SET status_before_delete = (
    SELECT (a.old_values ->> 'status')::user_status
    FROM audit_logs a
    WHERE a.entity_id = u.id AND a.action = 'user_soft_deleted'
      AND a.old_values ? 'status'
    ORDER BY a.created_at DESC
    LIMIT 1)
WHERE u.deleted_at IS NOT NULL;

CREATE OR REPLACE FUNCTION soft_delete_user(user_id_param UUID)
RETURNS BOOLEAN AS $$
BEGIN
    UPDATE users
    SET status_before_delete = status,
        deleted_at = CURRENT_TIMESTAMP,
        status = 'deleted'
    WHERE id = user_id_param AND deleted_at IS NULL;

    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

-- The role of the auth, users and admin functions: reads and writes on the
-- tables they serve, DELETE only where the API deletes (roles and role
-- assignments: a DELETE of a user row would null the audit trail's
-- references to it), and on audit_logs only INSERT and SELECT. It owns
-- nothing, so it can neither disable the audit triggers nor drop partitions;
-- migrations and the cleanup job keep the owner role. Roles are
-- cluster-wide: parallel migrations of several databases may race to create
-- it, so both ways a duplicate shows are tolerated. It is created without
-- LOGIN; on deploy the cleanup function gives it the password of its
-- secret (AppDbSecret in template.yaml).
DO $$
BEGIN
    CREATE ROLE user_management_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO user_management_app;
GRANT SELECT, INSERT, UPDATE
    ON users, roles, user_roles, refresh_tokens, password_reset_tokens,
       email_verification_tokens, rate_limits
    TO user_management_app;
GRANT DELETE ON roles, user_roles TO user_management_app;
GRANT SELECT, INSERT ON audit_logs TO user_management_app;

-- The hourly cap on verification mails counts per address.
CREATE INDEX idx_email_verification_tokens_email
    ON email_verification_tokens (lower(email), created_at);
