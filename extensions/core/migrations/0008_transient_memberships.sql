-- Until 2026-12 the server's role became a member of every workspace and snapshot role it made,
-- for good. It is now one only inside the transactions that need it (src/db/role-membership.ts):
-- a member of 10,000 roles paid, on its next membership check after any role change in the
-- cluster, the rebuild of its list of them all, in quadratic time before PostgreSQL 17
-- (docs/benchmarks.md, Fleet scale). The memberships it kept in this database's roles (those the
-- registry records, and any named with this database's prefix) are taken back here. On
-- PostgreSQL 16 and later only its own grants go: the ADMIN OPTION PostgreSQL gave the creator
-- of each role stays (it lets the server drop the role, and is no member's list of the kind the
-- ownership and SET ROLE checks walk).
DO $$
DECLARE
  prefix text := 'pgw\_' || left(encode(sha256(convert_to(current_database(), 'UTF8')), 'hex'), 8) || '\_%';
  granted name;
BEGIN
  FOR granted IN
    SELECT DISTINCT r.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
     WHERE m.member = (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = current_user)
       AND (r.rolname LIKE prefix
            OR r.rolname IN (SELECT c.role_name FROM project_registry.workspace_config c
                             UNION ALL SELECT c.snapshot_role_name FROM project_registry.workspace_config c))
  LOOP
    EXECUTE format('REVOKE %I FROM CURRENT_USER', granted);
  END LOOP;
END
$$;
