SELECT id, username, email, password_hash, password_changed_at, failed_login_attempts,
       locked_until, first_name, last_name, phone_number, date_of_birth,
       profile_picture_url, bio, status AS "status: UserStatus", is_email_verified,
       is_phone_verified, created_at, updated_at, last_login_at, deleted_at,
       gdpr_consent_at, data_retention_until,
       ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
             WHERE ur.user_id = u.id ORDER BY r.name)::text[] AS "roles!"
FROM users u
WHERE deleted_at IS NULL AND (lower(email) = lower($1) OR lower(username) = lower($1))
