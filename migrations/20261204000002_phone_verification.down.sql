-- The audit actions added by the up migration stay (enum values cannot be dropped).
CREATE OR REPLACE FUNCTION forget_user_credentials(user_id_param UUID)
RETURNS VOID AS $$
BEGIN
    DELETE FROM mfa_factors WHERE user_id = user_id_param;
    DELETE FROM mfa_recovery_codes WHERE user_id = user_id_param;
    DELETE FROM mfa_challenges WHERE user_id = user_id_param;
    DELETE FROM mfa_failures WHERE user_id = user_id_param;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS users_phone_changed ON users;
DROP FUNCTION IF EXISTS clear_phone_verification();
DROP INDEX IF EXISTS idx_users_verified_phone;
DROP TABLE IF EXISTS phone_verifications;
