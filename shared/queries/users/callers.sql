-- caller.sql for a batch of requests: key n of the arrays ($1 user ids,
-- $2 session ids) answers as the row with batch_pos n (and its id), or not at all when that user does not
-- exist (db::users::callers).
SELECT k.n AS "batch_pos!", u.id, status AS "status: UserStatus", deleted_at IS NOT NULL AS "deleted!",
       ARRAY(SELECT role_id FROM user_roles ur WHERE ur.user_id = u.id) AS "role_ids!",
       (SELECT version FROM role_catalog) AS "roles_version!",
       EXISTS (SELECT 1 FROM refresh_tokens t
               WHERE t.session_id = k.sid AND t.user_id = u.id
                 AND t.revoked_at IS NULL AND t.expires_at > now()
                 AND t.session_expires_at > now()) AS "session_live!"
-- The arrays behind sub-selects: the planner then cannot see their length,
-- so every batch size costs the same and the statement keeps one generic
-- plan (with the arrays as plain parameters, each execution was planned
-- again for its length: a third of the throughput).
FROM unnest((SELECT $1::uuid[]), (SELECT $2::uuid[])) WITH ORDINALITY AS k(id, sid, n)
JOIN users u ON u.id = k.id
