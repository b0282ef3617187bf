DROP TRIGGER IF EXISTS roles_changed ON roles;
DROP FUNCTION IF EXISTS bump_role_catalog();
DROP TABLE IF EXISTS role_catalog;
