SELECT u.*,
       -- Filled from the role catalog (shared/src/security/role_catalog.rs).
       '{}'::text[] AS roles,
       ARRAY(SELECT role_id FROM user_roles ur WHERE ur.user_id = u.id) AS role_ids,
       (SELECT version FROM role_catalog) AS roles_version,
       EXISTS (SELECT 1 FROM refresh_tokens t
               WHERE t.session_id = $2 AND t.user_id = u.id
                 AND t.revoked_at IS NULL AND t.expires_at > now()
                 AND t.session_expires_at > now()) AS session_live
FROM users u WHERE id = $1
