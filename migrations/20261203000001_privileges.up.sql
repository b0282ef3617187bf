-- Privileges: restore brings back the status a user had before the delete,
-- and the API functions connect as a role that cannot alter the audit trail.

-- Soft delete remembers the status it replaced; restore puts it back
-- (a suspended user stays suspended after a delete and a restore).
ALTER TABLE users ADD COLUMN status_before_delete user_status;

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

-- The role of the auth, users and admin functions: data changes on the
-- tables they serve, and on audit_logs only INSERT and SELECT. It owns
-- nothing, so it can neither disable the audit triggers nor drop partitions;
-- migrations and the cleanup job keep the owner role. Roles are
-- cluster-wide: parallel migrations of several databases may race to create
-- it, so both ways a duplicate shows are tolerated. It is created without
-- LOGIN; the deployment gives it a password (docs/operations.md).
DO $$
BEGIN
    CREATE ROLE user_management_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO user_management_app;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON users, roles, user_roles, refresh_tokens, password_reset_tokens,
       email_verification_tokens, rate_limits
    TO user_management_app;
GRANT SELECT, INSERT ON audit_logs TO user_management_app;

-- The hourly cap on verification mails counts per address.
CREATE INDEX idx_email_verification_tokens_email
    ON email_verification_tokens (lower(email), created_at);
