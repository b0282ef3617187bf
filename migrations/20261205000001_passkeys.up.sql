-- Passkeys (WebAuthn): a second kind of factor in mfa_factors, and the
-- server-side state of WebAuthn ceremonies when Redis is not configured
-- (docs/schema.md, "Second factors").

-- A passkey row carries the credential (its id, and webauthn-rs's
-- `Passkey` as JSON: public key, algorithm, counter, flags) instead of a
-- sealed secret. Public keys are not secret: nothing to encrypt.
ALTER TABLE mfa_factors DROP CONSTRAINT mfa_factors_kind_check;
ALTER TABLE mfa_factors
    ALTER COLUMN secret_ciphertext DROP NOT NULL,
    ALTER COLUMN secret_key_id DROP NOT NULL,
    ADD COLUMN credential_id BYTEA,
    ADD COLUMN credential JSONB,
    -- The authenticator's signature counter (0 for authenticators that
    -- keep none) and its backup flags, as last seen.
    ADD COLUMN sign_count BIGINT,
    ADD COLUMN backup_eligible BOOLEAN,
    ADD COLUMN backup_state BOOLEAN,
    ADD CONSTRAINT mfa_factors_kind_check CHECK (kind IN ('totp', 'webauthn')),
    ADD CONSTRAINT mfa_factors_material CHECK (
        (kind = 'totp' AND secret_ciphertext IS NOT NULL AND secret_key_id IS NOT NULL
             AND credential_id IS NULL AND credential IS NULL)
        OR (kind = 'webauthn' AND credential_id IS NOT NULL AND credential IS NOT NULL
             AND sign_count IS NOT NULL AND secret_ciphertext IS NULL
             AND confirmed_at IS NOT NULL)),
    ADD CONSTRAINT mfa_factors_credential_id_length
        CHECK (octet_length(credential_id) BETWEEN 16 AND 1023);
-- A credential belongs to one account, ever registered once; also the
-- look-up of a passwordless login.
CREATE UNIQUE INDEX mfa_factors_credential ON mfa_factors (credential_id)
    WHERE credential_id IS NOT NULL;

-- A ceremony's state between its start and its finish (five minutes),
-- when Redis is not configured or not answering. `id` says what it
-- belongs to: `register:<session>`, `step_up:<session>`, `login:<mfa_token
-- hash>` or `passwordless:<ceremony id>`. Taken (deleted) by its finish;
-- expired rows are removed by the nightly cleanup.
CREATE TABLE webauthn_ceremonies (
    id VARCHAR(100) PRIMARY KEY,
    user_id UUID REFERENCES users (id) ON DELETE CASCADE,
    state JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT valid_ceremony_expiry CHECK (expires_at > created_at)
);
CREATE INDEX idx_webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
CREATE INDEX idx_webauthn_ceremonies_user ON webauthn_ceremonies (user_id)
    WHERE user_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON webauthn_ceremonies TO user_management_app;

CREATE OR REPLACE FUNCTION forget_user_credentials(user_id_param UUID)
RETURNS VOID AS $$
BEGIN
    DELETE FROM mfa_factors WHERE user_id = user_id_param;
    DELETE FROM mfa_recovery_codes WHERE user_id = user_id_param;
    DELETE FROM mfa_challenges WHERE user_id = user_id_param;
    DELETE FROM mfa_failures WHERE user_id = user_id_param;
    DELETE FROM phone_verifications WHERE user_id = user_id_param;
    DELETE FROM webauthn_ceremonies WHERE user_id = user_id_param;
END;
$$ LANGUAGE plpgsql;
