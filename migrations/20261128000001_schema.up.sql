-- The schema of DATABASE-DESIGN.md, with the defects listed in the foundation
-- issue fixed. Each fix is marked "FIX n" and has a test in tests/api/schema.rs.

CREATE TYPE user_status AS ENUM (
    'pending_verification', 'active', 'inactive', 'suspended', 'deleted'
);

CREATE TYPE audit_action AS ENUM (
    'user_registered',
    'login_succeeded',
    'login_failed',
    'account_locked',
    'account_unlocked',
    'logout',
    'token_refreshed',
    'refresh_token_reused',
    'sessions_revoked',
    'password_changed',
    'password_reset_requested',
    'password_reset_completed',
    'email_verification_sent',
    'email_verified',
    'email_change_requested',
    'profile_updated',
    'status_changed',
    'role_created',
    'role_updated',
    'role_deleted',
    'role_assigned',
    'role_removed',
    'user_soft_deleted',
    'user_restored',
    'user_anonymized',
    'user_purged',
    'data_exported'
);

-- ---------------------------------------------------------------- users
CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    username VARCHAR(50) NOT NULL,
    email VARCHAR(255) NOT NULL,

    password_hash VARCHAR(255) NOT NULL,
    password_changed_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    failed_login_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until TIMESTAMPTZ,

    first_name VARCHAR(100),
    last_name VARCHAR(100),
    phone_number VARCHAR(20),
    date_of_birth DATE,
    profile_picture_url VARCHAR(500),
    bio TEXT CHECK (char_length(bio) <= 500),

    status user_status NOT NULL DEFAULT 'active',
    is_email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    is_phone_verified BOOLEAN NOT NULL DEFAULT FALSE,

    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_login_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,

    gdpr_consent_at TIMESTAMPTZ,
    data_retention_until DATE,

    CONSTRAINT username_length CHECK (char_length(username) >= 3),
    CONSTRAINT email_format CHECK (email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$'),
    CONSTRAINT phone_format CHECK (phone_number IS NULL OR phone_number ~* '^\+?[1-9]\d{1,14}$'),
    CONSTRAINT valid_dates CHECK (deleted_at IS NULL OR deleted_at >= created_at),
    CONSTRAINT failed_attempts_non_negative CHECK (failed_login_attempts >= 0)
);

-- FIX 2 and FIX 3: uniqueness is case-insensitive and applies only to users
-- that are not soft-deleted, so a deleted user's e-mail and username are free
-- for new sign-ups without rewriting them. These also serve the hot-path
-- lookups by e-mail and username (the design's idx_users_email/_username).
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_username_key ON users (lower(username)) WHERE deleted_at IS NULL;

CREATE INDEX idx_users_status ON users (status) WHERE deleted_at IS NULL;
-- FIX 6: the design's idx_users_login_lookup(email, password_hash) is not
-- created: login looks up by users_email_key / users_username_key, and the
-- index would only hold a second copy of every password hash.
CREATE INDEX idx_users_status_created ON users (status, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_users_created_at ON users (created_at DESC, id DESC);
CREATE INDEX idx_users_last_login ON users (last_login_at DESC NULLS LAST, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_users_deleted_at ON users (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX idx_users_retention ON users (data_retention_until)
    WHERE data_retention_until IS NOT NULL;
CREATE INDEX idx_users_fulltext ON users
    USING gin (to_tsvector('english',
        COALESCE(username, '') || ' ' ||
        COALESCE(email, '') || ' ' ||
        COALESCE(first_name, '') || ' ' ||
        COALESCE(last_name, '')
    )) WHERE deleted_at IS NULL;

-- ------------------------------------------------------- refresh tokens
-- A session is the chain of refresh tokens that started with one login;
-- session_id is stable across rotations (the access token's `sid` claim) and
-- session_expires_at is the absolute lifetime that rotation never extends.
CREATE TABLE refresh_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id UUID NOT NULL,
    token_hash VARCHAR(255) NOT NULL UNIQUE,

    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMPTZ NOT NULL,
    session_expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    -- FIX 8: deleting an expired successor must not fail while its
    -- predecessor still exists.
    replaced_by UUID REFERENCES refresh_tokens (id) ON DELETE SET NULL,

    created_by_ip VARCHAR(45),
    user_agent TEXT,
    device_fingerprint VARCHAR(255),

    CONSTRAINT valid_expiry CHECK (expires_at > created_at),
    CONSTRAINT no_self_replacement CHECK (replaced_by != id)
);

-- FIX 1: a predicate may not use CURRENT_TIMESTAMP. The unique index on
-- token_hash already serves validation (and must also find revoked tokens, to
-- detect reuse); live tokens are found per session and per user through
-- partial indexes on revoked_at, which is immutable.
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id, expires_at DESC);
CREATE INDEX idx_refresh_tokens_live_session ON refresh_tokens (session_id)
    WHERE revoked_at IS NULL;
CREATE INDEX idx_refresh_tokens_expires ON refresh_tokens (expires_at);

-- ------------------------------------------------------------ audit logs
-- FIX 5: monthly range partitions on log_date; the primary key includes the
-- partition key. FIX 10: request_id is text (API Gateway ids are not UUIDs).
CREATE TABLE audit_logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY,

    user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    performed_by UUID REFERENCES users (id) ON DELETE SET NULL,
    action audit_action NOT NULL,

    entity_type VARCHAR(50) NOT NULL,
    entity_id UUID,
    old_values JSONB,
    new_values JSONB,

    ip_address INET,
    user_agent TEXT,
    request_id TEXT,

    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    log_date DATE NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')::date,

    severity VARCHAR(20) NOT NULL DEFAULT 'info'
        CHECK (severity IN ('debug', 'info', 'notice', 'warning', 'error', 'critical')),
    tags TEXT[],

    PRIMARY KEY (id, log_date)
) PARTITION BY RANGE (log_date);

CREATE INDEX idx_audit_logs_user_id ON audit_logs (user_id, created_at DESC, id DESC);
CREATE INDEX idx_audit_logs_performed_by ON audit_logs (performed_by, created_at DESC, id DESC);
CREATE INDEX idx_audit_logs_action ON audit_logs (action, created_at DESC, id DESC);
CREATE INDEX idx_audit_logs_entity ON audit_logs (entity_type, entity_id);
-- FIX 1: the design's idx_audit_logs_log_date with a CURRENT_DATE predicate is
-- replaced by partition pruning on log_date plus this time index.
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at DESC, id DESC);

-- Creates the monthly partitions covering [from_month, to_month]; returns how
-- many it created. Called by the migrations and by the cleanup job
-- (pg_partman is not assumed).
CREATE FUNCTION create_audit_partitions(from_month DATE, to_month DATE)
RETURNS INTEGER AS $$
DECLARE
    m DATE := date_trunc('month', from_month)::date;
    last DATE := date_trunc('month', to_month)::date;
    part TEXT;
    created INTEGER := 0;
BEGIN
    WHILE m <= last LOOP
        part := format('audit_logs_%s', to_char(m, 'YYYY_MM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_logs FOR VALUES FROM (%L) TO (%L)',
                part, m, (m + INTERVAL '1 month')::date);
            created := created + 1;
        END IF;
        m := (m + INTERVAL '1 month')::date;
    END LOOP;
    RETURN created;
END;
$$ LANGUAGE plpgsql;

-- Drops the partitions whose whole month lies before `cutoff` (retention works
-- by dropping partitions, never by deleting rows); returns how many.
CREATE FUNCTION drop_audit_partitions_before(cutoff DATE)
RETURNS INTEGER AS $$
DECLARE
    part RECORD;
    dropped INTEGER := 0;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'audit_logs'
          AND c.relname ~ '^audit_logs_\d{4}_\d{2}$'
          AND (to_date(substring(c.relname from 12), 'YYYY_MM') + INTERVAL '1 month')::date <= cutoff
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END;
$$ LANGUAGE plpgsql;

SELECT create_audit_partitions(
    (date_trunc('month', CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - INTERVAL '1 month')::date,
    (date_trunc('month', CURRENT_TIMESTAMP AT TIME ZONE 'UTC') + INTERVAL '3 months')::date);

-- FIX 9: audit rows are immutable. The only update allowed is the one the
-- foreign keys' ON DELETE SET NULL makes when a user row is purged.
CREATE FUNCTION forbid_audit_log_changes() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'user_id' - 'performed_by') = (to_jsonb(OLD) - 'user_id' - 'performed_by')
       AND (NEW.user_id IS NULL OR NEW.user_id = OLD.user_id)
       AND (NEW.performed_by IS NULL OR NEW.performed_by = OLD.performed_by) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_logs rows are immutable (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_logs_immutable
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION forbid_audit_log_changes();
CREATE TRIGGER audit_logs_no_truncate
    BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_audit_log_changes();

-- ----------------------------------------------------------- rate limits
CREATE TABLE rate_limits (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identifier VARCHAR(255) NOT NULL,
    endpoint VARCHAR(255) NOT NULL,
    request_count INTEGER NOT NULL DEFAULT 1,
    window_start TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    window_end TIMESTAMPTZ NOT NULL,
    blocked_until TIMESTAMPTZ,

    CONSTRAINT unique_rate_limit UNIQUE (identifier, endpoint, window_start),
    CONSTRAINT valid_window CHECK (window_end > window_start)
);
-- FIX 1: lookups use unique_rate_limit; the cleanup scans by window_end.
CREATE INDEX idx_rate_limits_window_end ON rate_limits (window_end);

-- ---------------------------------------------------- one-time tokens
CREATE TABLE password_reset_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash VARCHAR(255) NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    used_at TIMESTAMPTZ,
    ip_address INET,

    CONSTRAINT valid_reset_expiry CHECK (expires_at > created_at),
    CONSTRAINT used_before_expiry CHECK (used_at IS NULL OR used_at <= expires_at)
);
CREATE INDEX idx_password_reset_tokens_user ON password_reset_tokens (user_id);
CREATE INDEX idx_password_reset_tokens_expires ON password_reset_tokens (expires_at);

CREATE TABLE email_verification_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email VARCHAR(255) NOT NULL,
    token_hash VARCHAR(255) NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    verified_at TIMESTAMPTZ,

    CONSTRAINT valid_verification_expiry CHECK (expires_at > created_at)
);
CREATE INDEX idx_email_verification_tokens_user ON email_verification_tokens (user_id);
CREATE INDEX idx_email_verification_tokens_expires ON email_verification_tokens (expires_at);

-- ------------------------------------------------------------------ RBAC
CREATE TABLE roles (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(50) NOT NULL UNIQUE,
    description TEXT,
    permissions JSONB NOT NULL DEFAULT '[]'::jsonb
        CONSTRAINT permissions_is_array CHECK (jsonb_typeof(permissions) = 'array'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE user_roles (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id UUID NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    assigned_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    assigned_by UUID REFERENCES users (id) ON DELETE SET NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX idx_user_roles_role ON user_roles (role_id);

INSERT INTO roles (name, description, permissions)
VALUES ('admin', 'Every permission', '["*"]');

-- ------------------------------------------------------------- triggers
CREATE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at := CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER update_users_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE FUNCTION update_password_changed_at() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
        NEW.password_changed_at := CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER track_password_changes
    BEFORE UPDATE OF password_hash ON users
    FOR EACH ROW EXECUTE FUNCTION update_password_changed_at();

-- FIX 7: the audit trigger records which fields changed, with non-personal
-- values only; personal fields appear as "[redacted]" so that anonymisation
-- leaves nothing behind in the seven-year audit trail. Bookkeeping columns
-- (login counters, timestamps) are audited by the application as events.
-- The request context comes from transaction-local settings app.request_id,
-- app.ip, app.user_agent and app.actor set by the application.
CREATE FUNCTION create_audit_log() RETURNS TRIGGER AS $$
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
        WHEN NEW.email LIKE 'anonymized.%@deleted.local'
             AND OLD.email NOT LIKE 'anonymized.%@deleted.local' THEN 'user_anonymized'
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

CREATE TRIGGER audit_users_changes
    AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION create_audit_log();

-- ------------------------------------------------------------ functions
-- The design's composition rule, bounded to the contract's 128 characters.
-- shared::domain::password applies the same rule (a test compares the two).
CREATE FUNCTION is_strong_password(password TEXT)
RETURNS BOOLEAN AS $$
BEGIN
    RETURN (
        char_length(password) >= 8 AND
        char_length(password) <= 128 AND
        password ~ '[A-Z]' AND
        password ~ '[a-z]' AND
        password ~ '[0-9]' AND
        password ~ '[^A-Za-z0-9]'
    );
END;
$$ LANGUAGE plpgsql IMMUTABLE STRICT;

-- FIX 2: soft delete only marks the row; the partial unique indexes free the
-- e-mail and username for new sign-ups.
CREATE FUNCTION soft_delete_user(user_id_param UUID)
RETURNS BOOLEAN AS $$
BEGIN
    UPDATE users
    SET deleted_at = CURRENT_TIMESTAMP,
        status = 'deleted'
    WHERE id = user_id_param AND deleted_at IS NULL;

    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

-- The anonymised form of a user, shared by cleanup_expired_data and the
-- cleanup job: no personal field survives.
CREATE FUNCTION anonymize_user(user_id_param UUID)
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
        deleted_at = COALESCE(deleted_at, CURRENT_TIMESTAMP)
    WHERE id = user_id_param
      AND email NOT LIKE 'anonymized.%@deleted.local';
    RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

-- FIX 4: ROW_COUNT is read with GET DIAGNOSTICS after every statement, and
-- expired refresh tokens are deleted whether or not they were revoked.
CREATE FUNCTION cleanup_expired_data()
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
      AND u.email NOT LIKE 'anonymized.%@deleted.local';

    RETURN QUERY SELECT v_deleted_tokens, v_deleted_rate_limits, v_anonymized_users;
END;
$$ LANGUAGE plpgsql;
