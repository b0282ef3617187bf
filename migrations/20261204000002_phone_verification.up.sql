-- Phone verification (docs/schema.md, "phone_verifications"): a 6-digit
-- code sent by SMS proves the user holds `phone_number`; confirming it sets
-- `is_phone_verified`. Changing the number clears that flag, whoever
-- changes it (a trigger, so no code path can forget).

ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'phone_verification_sent';
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'phone_verified';

CREATE TABLE phone_verifications (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The number the code was sent to: it confirms only that number.
    phone_number VARCHAR(20) NOT NULL,
    -- Hex SHA-256 of "<id>:<code>".
    code_hash VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMPTZ NOT NULL,
    -- Wrong codes tried; at the limit the code dies (used_at is set).
    attempts INTEGER NOT NULL DEFAULT 0,
    used_at TIMESTAMPTZ,
    CONSTRAINT valid_phone_code_expiry CHECK (expires_at > created_at)
);
-- The caller's live code, and the hourly cap per user.
CREATE INDEX idx_phone_verifications_user ON phone_verifications (user_id, created_at DESC);
-- The hourly cap per number.
CREATE INDEX idx_phone_verifications_number ON phone_verifications (phone_number, created_at);
-- The cleanup, and the service-wide hourly budget (a code expires exactly
-- its lifetime after it was created, so "created in the last hour" is
-- "expires after now - 1 hour + lifetime").
CREATE INDEX idx_phone_verifications_expires ON phone_verifications (expires_at);
-- A number another account has verified gets no codes.
CREATE INDEX idx_users_verified_phone ON users (phone_number)
    WHERE is_phone_verified AND deleted_at IS NULL;

CREATE FUNCTION clear_phone_verification() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.phone_number IS DISTINCT FROM OLD.phone_number THEN
        NEW.is_phone_verified := FALSE;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_phone_changed
    BEFORE UPDATE OF phone_number ON users
    FOR EACH ROW EXECUTE FUNCTION clear_phone_verification();

-- DELETE: a code whose SMS could not be sent is removed (it must not count
-- toward the caps).
GRANT SELECT, INSERT, UPDATE, DELETE ON phone_verifications TO user_management_app;

-- Anonymisation forgets the numbers codes were sent to as well.
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
