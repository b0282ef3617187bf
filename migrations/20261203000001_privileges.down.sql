DROP INDEX IF EXISTS idx_email_verification_tokens_email;

-- The role is cluster-wide and may serve other databases: only this
-- database's grants are taken back.
REVOKE ALL ON users, roles, user_roles, refresh_tokens, password_reset_tokens,
              email_verification_tokens, rate_limits, audit_logs
    FROM user_management_app;
REVOKE USAGE ON SCHEMA public FROM user_management_app;

CREATE OR REPLACE FUNCTION soft_delete_user(user_id_param UUID)
RETURNS BOOLEAN AS $$
BEGIN
    UPDATE users
    SET deleted_at = CURRENT_TIMESTAMP,
        status = 'deleted'
    WHERE id = user_id_param AND deleted_at IS NULL;

    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

ALTER TABLE users DROP COLUMN status_before_delete;
