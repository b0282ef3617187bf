-- The version of the roles table: bumped in the transaction of every change
-- to roles, so a process that keeps the roles (names and permissions) in
-- memory learns from one column of the caller's statement whether its copy
-- is current, and the statement reads only the caller's role ids. Being a
-- row (not a sequence), a bump is seen only once its change has committed.
CREATE TABLE role_catalog (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version BIGINT NOT NULL
);
INSERT INTO role_catalog (version) VALUES (1);

CREATE FUNCTION bump_role_catalog() RETURNS TRIGGER AS $$
BEGIN
    UPDATE role_catalog SET version = version + 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER roles_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION bump_role_catalog();

GRANT SELECT, UPDATE ON role_catalog TO user_management_app;
