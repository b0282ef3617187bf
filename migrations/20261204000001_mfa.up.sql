-- Second factors (docs/schema.md, "Second factors"): TOTP factors with
-- their secret encrypted by the application (AES-256-GCM, key id stored
-- beside it), single-use recovery codes stored as SHA-256, the one-time
-- `mfa_token` of a two-step login, and per session the methods that
-- authenticated it (`amr`) and when its last second factor was verified.

ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'mfa_enabled';
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'mfa_disabled';
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'mfa_verified';
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'recovery_codes_regenerated';
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'mfa_reset';

CREATE TABLE mfa_factors (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind VARCHAR(20) NOT NULL CHECK (kind IN ('totp')),
    name VARCHAR(100) NOT NULL,
    -- nonce || ciphertext || tag, sealed with the key `secret_key_id` and
    -- the user id as associated data (a row copied to another user fails).
    secret_ciphertext BYTEA NOT NULL,
    secret_key_id VARCHAR(64) NOT NULL,
    -- The last TOTP time step accepted: a code is never accepted twice.
    last_used_step BIGINT,
    -- NULL while enrolment waits for its first code.
    confirmed_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- One TOTP factor per user (a pending enrolment is replaced by a new one).
CREATE UNIQUE INDEX mfa_factors_one_totp ON mfa_factors (user_id) WHERE kind = 'totp';
CREATE INDEX idx_mfa_factors_user ON mfa_factors (user_id, created_at);
CREATE INDEX idx_mfa_factors_pending ON mfa_factors (created_at) WHERE confirmed_at IS NULL;

CREATE TABLE mfa_recovery_codes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash VARCHAR(64) NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (user_id, code_hash)
);

-- The `mfa_token` a correct password gets when a second factor is needed:
-- stored as SHA-256, five minutes, spent by the successful second factor.
CREATE TABLE mfa_challenges (
    token_hash VARCHAR(64) PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    device_fingerprint VARCHAR(255),
    CONSTRAINT valid_challenge_expiry CHECK (expires_at > created_at)
);
CREATE INDEX idx_mfa_challenges_user ON mfa_challenges (user_id);
CREATE INDEX idx_mfa_challenges_expires ON mfa_challenges (expires_at);

-- Wrong second factors since the last right one, per user, and the locks
-- set since the first of them (by a wrong code or a wrong password alike).
-- Unlike the login lockout's count, neither the end of a lock nor a
-- password reset clears them, so each lock lasts twice as long as the one
-- before (codes cannot be guessed at a steady rate forever).
CREATE TABLE mfa_failures (
    user_id UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures INTEGER NOT NULL,
    locks INTEGER NOT NULL DEFAULT 0,
    last_failed_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- A new password (a reset, a change, a rehash) ends every pending
-- mfa_token of the user in the same transaction.
CREATE FUNCTION end_mfa_challenges() RETURNS TRIGGER AS $$
BEGIN
    UPDATE mfa_challenges SET used_at = now()
    WHERE user_id = NEW.id AND used_at IS NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_password_ends_mfa_challenges
    AFTER UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION end_mfa_challenges();

-- RFC 8176 method references of the session (copied to each successor
-- token at rotation) and the time of its last second factor (step-up).
ALTER TABLE refresh_tokens
    ADD COLUMN amr TEXT[] NOT NULL DEFAULT '{pwd}',
    ADD COLUMN mfa_verified_at TIMESTAMPTZ;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON mfa_factors, mfa_recovery_codes, mfa_challenges, mfa_failures
    TO user_management_app;

-- What anonymisation deletes besides rewriting the row: the user's second
-- factors (a TOTP secret is personal data) and whatever is pending. Later
-- migrations that store more about a user redefine this one function.
CREATE OR REPLACE FUNCTION forget_user_credentials(user_id_param UUID)
RETURNS VOID AS $$
BEGIN
    DELETE FROM mfa_factors WHERE user_id = user_id_param;
    DELETE FROM mfa_recovery_codes WHERE user_id = user_id_param;
    DELETE FROM mfa_challenges WHERE user_id = user_id_param;
    DELETE FROM mfa_failures WHERE user_id = user_id_param;
END;
$$ LANGUAGE plpgsql;

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
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM forget_user_credentials(user_id_param);
    RETURN TRUE;
END;
$$ LANGUAGE plpgsql;
