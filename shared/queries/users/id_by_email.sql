SELECT id, status AS "status: UserStatus" FROM users
WHERE deleted_at IS NULL AND lower(email) = lower($1)
