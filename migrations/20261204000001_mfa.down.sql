-- PostgreSQL cannot drop enum values: the audit actions added by the up
-- migration stay (unused) after this.
-- anonymize_user as 20261203000002 defined it.
CREATE OR REPLACE FUNCTION anonymize_user(user_id_param UUID)
RETURNS BOOLEAN AS $$
BEGIN
    UPDATE users
    SET email = 'anonymized.' || id::text || '@deleted.local',
        username = 'user_' || id::text,
        first_name = NULL,
        last_name = NULL,
        phone_number = NULL,
        date_of_birth = NULL,
        profile_picture_url = NULL,
        bio = NULL,
        password_hash = 'ANONYMIZED',
        status = 'deleted',
        deleted_at = COALESCE(deleted_at, CURRENT_TIMESTAMP),
        anonymized_at = CURRENT_TIMESTAMP
    WHERE id = user_id_param
      AND anonymized_at IS NULL;
    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

DROP FUNCTION IF EXISTS forget_user_credentials(UUID);

ALTER TABLE refresh_tokens DROP COLUMN IF EXISTS mfa_verified_at, DROP COLUMN IF EXISTS amr;
DROP TRIGGER IF EXISTS users_password_ends_mfa_challenges ON users;
DROP FUNCTION IF EXISTS end_mfa_challenges();
DROP TABLE IF EXISTS mfa_failures;
DROP TABLE IF EXISTS mfa_challenges;
DROP TABLE IF EXISTS mfa_recovery_codes;
DROP TABLE IF EXISTS mfa_factors;
