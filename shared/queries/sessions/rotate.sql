-- One refresh, one statement (one round trip, one commit): find the token by
-- its hash, share-lock its user, spend the token if it may be spent, insert
-- its successor and the audit row, and return what was found so the caller
-- can say why nothing was rotated (by the database's clock, `db_now`, the one
-- the claim used).
--  $1 presented hash   $2 successor id   $3 successor hash   $4 TTL in days
--  $5 client IP        $6 user agent     $7 presented device fingerprint
--  $8 statuses that may log in           $9 request id
WITH old AS (
    SELECT id, user_id, session_id, expires_at, session_expires_at, revoked_at,
           replaced_by, device_fingerprint
    FROM refresh_tokens WHERE token_hash = $1
), owner AS (
    -- A revocation locks the user row exclusively before it revokes, so it
    -- either committed first (and the claim below finds the token spent) or
    -- waits for this commit and then revokes the successor too.
    SELECT u.*,
           ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                 WHERE ur.user_id = u.id ORDER BY r.name)::text[] AS roles
    FROM users u WHERE u.id = (SELECT user_id FROM old)
    FOR SHARE OF u
), claimed AS (
    -- Of concurrent refreshes of one token exactly one passes: the others
    -- wait on the row and re-read revoked_at.
    UPDATE refresh_tokens t SET revoked_at = now(), replaced_by = $2
    FROM owner
    WHERE t.token_hash = $1 AND owner.id = t.user_id
      AND owner.deleted_at IS NULL AND owner.status = ANY($8)
      AND t.revoked_at IS NULL AND t.expires_at > now() AND t.session_expires_at > now()
      AND (t.device_fingerprint IS NULL OR t.device_fingerprint = $7)
    RETURNING t.user_id, t.session_id, t.session_expires_at, t.device_fingerprint,
              t.amr, t.mfa_verified_at
), successor AS (
    -- The successor keeps the session, its device and how it was
    -- authenticated (amr, the last second factor), and never outlives it.
    INSERT INTO refresh_tokens (id, user_id, session_id, token_hash, expires_at,
                                session_expires_at, created_by_ip, user_agent,
                                device_fingerprint, amr, mfa_verified_at)
    SELECT $2, user_id, session_id, $3,
           LEAST(now() + make_interval(days => $4), session_expires_at),
           session_expires_at, $5::text, $6::text, device_fingerprint, amr, mfa_verified_at
    FROM claimed
    RETURNING expires_at, amr
), audited AS (
    INSERT INTO audit_logs (user_id, action, entity_type, entity_id, new_values,
                            ip_address, user_agent, request_id)
    SELECT user_id, 'token_refreshed', 'user', user_id,
           jsonb_build_object('session_id', session_id), $5::text::inet, $6::text, $9
    FROM claimed
)
SELECT owner.*,
       old.id AS token_id, old.session_id AS token_session_id,
       old.expires_at AS token_expires_at,
       old.session_expires_at AS token_session_expires_at,
       old.revoked_at AS token_revoked_at, old.replaced_by AS token_replaced_by,
       old.device_fingerprint AS token_device_fingerprint,
       (SELECT expires_at FROM successor) AS successor_expires_at,
       (SELECT amr FROM successor) AS successor_amr,
       now() AS db_now
FROM old JOIN owner ON owner.id = old.user_id
