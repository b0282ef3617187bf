SELECT id, user_id, session_id, expires_at, session_expires_at, revoked_at, replaced_by,
       device_fingerprint
FROM refresh_tokens WHERE token_hash = $1
