-- When a user was anonymised, as a column: the anonymised form of e-mail
-- and username stays (anonymized.<id>@deleted.local, user_<id>), but nothing
-- detects anonymisation by matching that form any more: the e-mail rule
-- accepts such an address, so a live user may hold one.

ALTER TABLE users ADD COLUMN anonymized_at TIMESTAMPTZ;

-- The backfill takes only rows anonymize_user produced: the hash no API
-- path can set, the address made from the row's own id, and a delete time;
-- the time is the audited anonymisation where the trail still has it. A
-- bookkeeping fill: no audit row, no updated_at change.
ALTER TABLE users DISABLE TRIGGER USER;
UPDATE users u SET anonymized_at = COALESCE(
        (SELECT max(a.created_at) FROM audit_logs a
         WHERE a.entity_id = u.id AND a.action = 'user_anonymized'),
        u.deleted_at)
WHERE u.password_hash = 'ANONYMIZED' AND u.deleted_at IS NOT NULL
  AND u.email = 'anonymized.' || u.id::text || '@deleted.local';
ALTER TABLE users ENABLE TRIGGER USER;

CREATE OR REPLACE FUNCTION create_audit_log() RETURNS TRIGGER AS $$
DECLARE
    personal CONSTANT TEXT[] := ARRAY['username', 'email', 'password_hash', 'first_name',
        'last_name', 'phone_number', 'date_of_birth', 'profile_picture_url', 'bio'];
    bookkeeping CONSTANT TEXT[] := ARRAY['updated_at', 'last_login_at',
        'failed_login_attempts', 'locked_until', 'password_changed_at'];
    old_row JSONB := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row JSONB := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    old_vals JSONB := '{}';
    new_vals JSONB := '{}';
    col TEXT;
    act audit_action;
    subject UUID := COALESCE(NEW.id, OLD.id);
    ip TEXT := NULLIF(current_setting('app.ip', true), '');
BEGIN
    FOR col IN SELECT jsonb_object_keys(COALESCE(new_row, old_row)) LOOP
        CONTINUE WHEN col = ANY (bookkeeping) OR col = 'id';
        CONTINUE WHEN TG_OP = 'UPDATE' AND (old_row -> col) IS NOT DISTINCT FROM (new_row -> col);
        IF old_row IS NOT NULL AND old_row -> col <> 'null'::jsonb THEN
            old_vals := old_vals || jsonb_build_object(col,
                CASE WHEN col = ANY (personal) THEN to_jsonb('[redacted]'::text) ELSE old_row -> col END);
        END IF;
        IF new_row IS NOT NULL AND new_row -> col <> 'null'::jsonb THEN
            new_vals := new_vals || jsonb_build_object(col,
                CASE WHEN col = ANY (personal) THEN to_jsonb('[redacted]'::text) ELSE new_row -> col END);
        END IF;
    END LOOP;

    IF TG_OP = 'UPDATE' AND old_vals = '{}' AND new_vals = '{}' THEN
        RETURN NULL;
    END IF;

    act := CASE
        WHEN TG_OP = 'INSERT' THEN 'user_registered'
        WHEN TG_OP = 'DELETE' THEN 'user_purged'
        WHEN NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN 'user_soft_deleted'
        WHEN NEW.deleted_at IS NULL AND OLD.deleted_at IS NOT NULL THEN 'user_restored'
        WHEN NEW.anonymized_at IS NOT NULL AND OLD.anonymized_at IS NULL THEN 'user_anonymized'
        WHEN NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN 'password_changed'
        WHEN NEW.is_email_verified
             AND (NOT OLD.is_email_verified OR NEW.email IS DISTINCT FROM OLD.email) THEN 'email_verified'
        WHEN NEW.status IS DISTINCT FROM OLD.status THEN 'status_changed'
        ELSE 'profile_updated'
    END::audit_action;

    INSERT INTO audit_logs (user_id, performed_by, action, entity_type, entity_id,
                            old_values, new_values, ip_address, user_agent, request_id)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE subject END,
            NULLIF(current_setting('app.actor', true), '')::uuid,
            act, 'user', subject,
            NULLIF(old_vals, '{}'), NULLIF(new_vals, '{}'),
            ip::inet,
            NULLIF(current_setting('app.user_agent', true), ''),
            NULLIF(current_setting('app.request_id', true), ''));
    RETURN NULL;
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
    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION cleanup_expired_data()
RETURNS TABLE (
    deleted_tokens INTEGER,
    deleted_rate_limits INTEGER,
    anonymized_users INTEGER
) AS $$
DECLARE
    v_rows INTEGER;
    v_deleted_tokens INTEGER := 0;
    v_deleted_rate_limits INTEGER := 0;
    v_anonymized_users INTEGER := 0;
BEGIN
    DELETE FROM refresh_tokens
    WHERE expires_at < CURRENT_TIMESTAMP - INTERVAL '7 days';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_deleted_tokens := v_deleted_tokens + v_rows;

    DELETE FROM password_reset_tokens
    WHERE expires_at < CURRENT_TIMESTAMP - INTERVAL '7 days';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_deleted_tokens := v_deleted_tokens + v_rows;

    DELETE FROM email_verification_tokens
    WHERE expires_at < CURRENT_TIMESTAMP - INTERVAL '7 days';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_deleted_tokens := v_deleted_tokens + v_rows;

    DELETE FROM rate_limits
    WHERE window_end < CURRENT_TIMESTAMP - INTERVAL '1 hour';
    GET DIAGNOSTICS v_deleted_rate_limits = ROW_COUNT;

    SELECT count(*) FILTER (WHERE anonymize_user(u.id))::INTEGER
    INTO v_anonymized_users
    FROM users u
    WHERE (u.deleted_at < CURRENT_TIMESTAMP - INTERVAL '90 days'
           OR u.data_retention_until < CURRENT_DATE)
      AND u.anonymized_at IS NULL;

    RETURN QUERY SELECT v_deleted_tokens, v_deleted_rate_limits, v_anonymized_users;
END;
$$ LANGUAGE plpgsql;
