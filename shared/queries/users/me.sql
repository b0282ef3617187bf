SELECT u.*,
       ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY r.name)::text[] AS roles,
       ARRAY(SELECT DISTINCT p FROM user_roles ur
             JOIN roles r ON r.id = ur.role_id,
             jsonb_array_elements_text(r.permissions) p
             WHERE ur.user_id = u.id)::text[] AS permissions,
       EXISTS (SELECT 1 FROM refresh_tokens t
               WHERE t.session_id = $2 AND t.user_id = u.id
                 AND t.revoked_at IS NULL AND t.expires_at > now()
                 AND t.session_expires_at > now()) AS session_live
FROM users u WHERE id = $1
