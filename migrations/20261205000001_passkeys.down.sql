CREATE OR REPLACE FUNCTION forget_user_credentials(user_id_param UUID)
RETURNS VOID AS $$
BEGIN
    DELETE FROM mfa_factors WHERE user_id = user_id_param;
    DELETE FROM mfa_recovery_codes WHERE user_id = user_id_param;
    DELETE FROM mfa_challenges WHERE user_id = user_id_param;
    DELETE FROM mfa_failures WHERE user_id = user_id_param;
    DELETE FROM phone_verifications WHERE user_id = user_id_param;
END;
$$ LANGUAGE plpgsql;

DROP TABLE IF EXISTS webauthn_ceremonies;
DELETE FROM mfa_factors WHERE kind = 'webauthn';
DROP INDEX IF EXISTS mfa_factors_credential;
ALTER TABLE mfa_factors
    DROP CONSTRAINT IF EXISTS mfa_factors_credential_id_length,
    DROP CONSTRAINT IF EXISTS mfa_factors_material,
    DROP CONSTRAINT mfa_factors_kind_check,
    DROP COLUMN credential_id,
    DROP COLUMN credential,
    DROP COLUMN sign_count,
    DROP COLUMN backup_eligible,
    DROP COLUMN backup_state,
    ALTER COLUMN secret_ciphertext SET NOT NULL,
    ALTER COLUMN secret_key_id SET NOT NULL,
    ADD CONSTRAINT mfa_factors_kind_check CHECK (kind IN ('totp'));
