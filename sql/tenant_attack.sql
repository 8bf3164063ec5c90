-- tenant_attack: a table's owner attacks the DBA through the isolation
-- helpers, and the lints see what could stand in for isolation or for
-- auth_begin.  0.1.0 kept the isolation state as JSON in the policy's
-- COMMENT, which the owner can rewrite; disable_tenant_isolation then
-- formatted its 'default' into ALTER TABLE ... SET DEFAULT %s, run by
-- whoever called it.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'

SET client_min_messages = warning;
\i test/support/try.sql
RESET client_min_messages;

-- the owner of a table (a manager, as enable_tenant_isolation requires),
-- another manager, and the DBA (the superuser running this file)
CREATE ROLE regress_ta_owner NOLOGIN IN ROLE authctx_manager;
CREATE ROLE regress_ta_other NOLOGIN IN ROLE authctx_manager;
CREATE SCHEMA ta AUTHORIZATION regress_ta_owner;
GRANT USAGE ON SCHEMA ta TO regress_ta_other;

-- what the owner would like the DBA to run: it notes who ran it
CREATE TABLE ta.ran (who text, superuser boolean);
ALTER TABLE ta.ran OWNER TO regress_ta_owner;
GRANT INSERT ON ta.ran TO PUBLIC;
SET ROLE regress_ta_owner;
CREATE FUNCTION ta.evil() RETURNS int LANGUAGE sql AS $$
  INSERT INTO ta.ran VALUES (current_user, current_setting('is_superuser')::boolean) RETURNING 1
$$;
RESET ROLE;
-- and an index of the DBA's in the owner's schema, for the owner to aim at
CREATE TABLE ta.dba_table (id int, tenant_id uuid);
CREATE INDEX dba_idx ON ta.dba_table (id);

-- state of a table as disable should leave it: RLS flags, default, indexes
CREATE FUNCTION pg_temp.shape(t regclass) RETURNS TABLE
  (owner regrole, rls boolean, forced boolean, policies bigint, tenant_default text, indexes text)
LANGUAGE sql AS $$
  SELECT c.relowner::regrole, c.relrowsecurity, c.relforcerowsecurity,
         (SELECT count(*) FROM pg_policy p WHERE p.polrelid = t),
         (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
           JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
          WHERE d.adrelid = t AND a.attname = 'tenant_id'),
         (SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index i WHERE i.indrelid = t)
    FROM pg_class c WHERE c.oid = t
$$;

-- ---------------------------------------------------------------- 1. the review's injection
SET ROLE regress_ta_owner;
CREATE TABLE ta.notes (id int, tenant_id uuid DEFAULT '00000000-0000-0000-0000-00000000000a', body text);
INSERT INTO ta.notes (id) VALUES (1);
SELECT * FROM pg_temp.shape('ta.notes');
SELECT authctx.enable_tenant_isolation('ta.notes');
-- the owner rewrites the comment: several ALTER TABLE actions in one
-- "default", one of them running ta.evil() once per row; RLS off; and the
-- DBA's index as "the index enable created"
COMMENT ON POLICY authctx_tenant_isolation ON ta.notes IS
  '{"column": "tenant_id", "rls_enabled": false, "rls_forced": false, "index": "dba_idx",
    "default": "NULL, ALTER COLUMN id TYPE int USING ta.evil(), OWNER TO regress_ta_other"}';
RESET ROLE;
-- the DBA undoes the isolation
SELECT authctx.disable_tenant_isolation('ta.notes');
-- nothing of the owner's ran; the table is as it was before enable
SELECT count(*) AS evil_ran FROM ta.ran;
SELECT * FROM pg_temp.shape('ta.notes');
SELECT indexes AS dba_table_indexes FROM pg_temp.shape('ta.dba_table');

-- ---------------------------------------------------------------- 2. a forged comment before a re-enable
-- (0.1.0's idempotent path kept the comment as the state to restore)
SET ROLE regress_ta_owner;
CREATE TABLE ta.notes2 (id int, tenant_id uuid, body text);
INSERT INTO ta.notes2 (id) VALUES (1), (2);
ALTER TABLE ta.notes2 ENABLE ROW LEVEL SECURITY;
SELECT authctx.enable_tenant_isolation('ta.notes2');
COMMENT ON POLICY authctx_tenant_isolation ON ta.notes2 IS
  '{"column": "tenant_id", "rls_enabled": false, "rls_forced": false, "index": null,
    "default": "NULL, ALTER COLUMN id TYPE int USING ta.evil()"}';
RESET ROLE;
SELECT authctx.enable_tenant_isolation('ta.notes2');
SELECT authctx.disable_tenant_isolation('ta.notes2');
SELECT count(*) AS evil_ran FROM ta.ran;
SELECT * FROM pg_temp.shape('ta.notes2');

-- ---------------------------------------------------------------- 3. the saved state is out of everyone's reach
SET ROLE regress_ta_owner;
SELECT authctx.enable_tenant_isolation('ta.notes');
SELECT relid, tenant_column, rls_enabled, rls_forced, default_known, previous_default, created_index
  FROM authctx._isolation_state() WHERE relid::text LIKE 'ta.%';
SELECT try($$INSERT INTO authctx.isolated_tables (relid, tenant_column, rls_enabled, rls_forced, default_known)
                     VALUES ('ta.dba_table', 'tenant_id', false, false, true)$$) AS insert_row;
SELECT try($$UPDATE authctx.isolated_tables SET previous_default = 'ta.evil()'$$) AS update_row;
SELECT try($$SELECT authctx._isolation_save_unchecked('ta.dba_table', 'tenant_id', NULL)$$) AS unchecked_save;
SELECT try($$SELECT authctx._isolation_forget_unchecked('ta.notes')$$) AS unchecked_forget;
-- the gates: only for the owner of the table, and only real indexes of it
SELECT try($$SELECT authctx._isolation_save('ta.dba_table', 'tenant_id', NULL)$$) AS save_not_owner;
SELECT try($$SELECT authctx._isolation_forget('ta.dba_table')$$) AS forget_not_owner;
SELECT try($$SELECT authctx._isolation_save('ta.notes', 'tenant_id', 'dba_idx')$$) AS foreign_index;
SELECT try($$SELECT authctx._isolation_save(NULL, 'tenant_id', NULL)$$) AS null_table;
RESET ROLE;
SET ROLE regress_ta_other;
SELECT try($$SELECT authctx._isolation_forget('ta.notes')$$) AS forget_other_owner;
SELECT try($$SELECT authctx.disable_tenant_isolation('ta.notes')$$) AS disable_other_owner;
SELECT try($$SELECT authctx.enable_tenant_isolation('ta.dba_table')$$) AS enable_other_owner;
RESET ROLE;
SELECT relid, created_index FROM authctx._isolation_state() WHERE relid::text LIKE 'ta.%';
-- bad arguments
SELECT try('SELECT authctx.disable_tenant_isolation(NULL)') AS disable_null;
SELECT try('SELECT authctx.enable_tenant_isolation(4000000000::oid::regclass)') AS no_such_table;
SELECT authctx.disable_tenant_isolation('ta.notes');

-- ---------------------------------------------------------------- 4. a default that cannot be restored
-- (what the 0.1.0 upgrade records for a comment whose default is not a
-- harmless form): disable drops it and says so
SET ROLE regress_ta_owner;
SELECT authctx.enable_tenant_isolation('ta.notes');
RESET ROLE;
UPDATE authctx.isolated_tables SET default_known = false, previous_default = NULL WHERE relid = 'ta.notes'::regclass;
SELECT authctx.disable_tenant_isolation('ta.notes');
SELECT * FROM pg_temp.shape('ta.notes');

-- ---------------------------------------------------------------- 5. stale rows
SET ROLE regress_ta_owner;
CREATE TABLE ta.gone (tenant_id uuid);
SELECT authctx.enable_tenant_isolation('ta.gone');
SELECT 'ta.gone'::regclass::oid AS gone_oid \gset
DROP TABLE ta.gone;
RESET ROLE;
-- the row of a dropped table counts for nothing ...
SELECT count(*) AS stale_rows FROM authctx.isolated_tables WHERE relid::oid = :gone_oid;
SELECT count(*) AS counted FROM authctx._isolation_state() WHERE relid::oid = :gone_oid;
-- ... and the next enable or disable purges it
SET ROLE regress_ta_owner;
SELECT authctx.enable_tenant_isolation('ta.notes');
RESET ROLE;
SELECT count(*) AS stale_rows FROM authctx.isolated_tables WHERE relid::oid = :gone_oid;
-- a row whose policy was dropped by hand is no isolation: disable refuses,
-- and enable records the table afresh
SET ROLE regress_ta_owner;
DROP POLICY authctx_tenant_isolation ON ta.notes;
SELECT try($$SELECT authctx.disable_tenant_isolation('ta.notes')$$) AS disable_without_policy;
ALTER TABLE ta.notes ALTER COLUMN tenant_id SET DEFAULT '00000000-0000-0000-0000-00000000000b';
ALTER TABLE ta.notes NO FORCE ROW LEVEL SECURITY;
ALTER TABLE ta.notes DISABLE ROW LEVEL SECURITY;
SELECT authctx.enable_tenant_isolation('ta.notes');
SELECT authctx.disable_tenant_isolation('ta.notes');
RESET ROLE;
SELECT * FROM pg_temp.shape('ta.notes');
SELECT count(*) AS rows_left FROM authctx.isolated_tables WHERE relid = 'ta.notes'::regclass;

-- ---------------------------------------------------------------- 6. partitions
SET ROLE regress_ta_owner;
CREATE TABLE ta.parted (tenant_id uuid, v int) PARTITION BY LIST (v);
CREATE TABLE ta.parted_1 PARTITION OF ta.parted FOR VALUES IN (1);
CREATE TABLE ta.parted_2 PARTITION OF ta.parted FOR VALUES IN (2);
ALTER TABLE ta.parted_2 ALTER COLUMN tenant_id SET DEFAULT '00000000-0000-0000-0000-00000000000c';
SELECT authctx.enable_tenant_isolation('ta.parted');
-- a partition created later is not isolated, and the lint says so
CREATE TABLE ta.parted_3 PARTITION OF ta.parted FOR VALUES IN (3);
SELECT table_name, has_policy, problem FROM authctx.isolation_report()
 WHERE table_name::text LIKE 'ta.parted%' ORDER BY 1;
SELECT authctx.enable_tenant_isolation('ta.parted_3');
SELECT table_name, problem FROM authctx.isolation_report() WHERE table_name::text LIKE 'ta.parted%' ORDER BY 1;
-- disable gives each partition back its own default (0.1.0 saved the
-- partitions' state after the parent's SET DEFAULT had reached them)
SELECT authctx.disable_tenant_isolation('ta.parted');
RESET ROLE;
SELECT c.relname, s.* FROM pg_class c, pg_temp.shape(c.oid) s
 WHERE c.relnamespace = 'ta'::regnamespace AND c.relname LIKE 'parted%' AND c.relkind IN ('r', 'p')
 ORDER BY 1;
SELECT count(*) AS rows_left FROM authctx.isolated_tables WHERE relid::text LIKE 'ta.%';

-- ---------------------------------------------------------------- 7. the lint sees policies that undo isolation
SET ROLE regress_ta_owner;
CREATE TABLE ta.lint (id int, tenant_id uuid);
SELECT authctx.enable_tenant_isolation('ta.lint');
SELECT table_name, has_policy, problem FROM authctx.isolation_report() WHERE table_name = 'ta.lint'::regclass;
-- another permissive policy ORs every row back in
CREATE POLICY open_door ON ta.lint FOR SELECT USING (true);
-- a restrictive one only narrows: no finding
CREATE POLICY narrow ON ta.lint AS RESTRICTIVE USING (id > 0);
SELECT table_name, has_policy, problem FROM authctx.isolation_report() WHERE table_name = 'ta.lint'::regclass;
DROP POLICY open_door ON ta.lint;
-- the isolation policy itself rewritten, and the bypass opened to everyone
ALTER POLICY authctx_tenant_isolation ON ta.lint USING (true);
ALTER POLICY authctx_admin_bypass ON ta.lint TO PUBLIC;
SELECT table_name, has_policy, problem FROM authctx.isolation_report() WHERE table_name = 'ta.lint'::regclass;
SELECT authctx.enable_tenant_isolation('ta.lint');  -- re-applies both
SELECT table_name, has_policy, problem FROM authctx.isolation_report() WHERE table_name = 'ta.lint'::regclass;
-- a tenant column with another name, quoted
CREATE TABLE ta."Odd" ("Org Id" uuid);
SELECT authctx.enable_tenant_isolation('ta."Odd"', 'Org Id');
SELECT table_name, tenant_column, has_policy, has_index, problem FROM authctx.isolation_report()
 WHERE table_name = 'ta."Odd"'::regclass;
SELECT authctx.disable_tenant_isolation('ta."Odd"');
SELECT authctx.disable_tenant_isolation('ta.lint');
RESET ROLE;

-- ---------------------------------------------------------------- 8. security_report
-- In a database of its own: on a clean install it has no rows.
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_authctx_lint;
\c regress_authctx_lint
\pset null '(null)'
SET client_min_messages = warning;
CREATE EXTENSION authctx;
RESET client_min_messages;
SET client_min_messages = warning;
\i test/support/try.sql
RESET client_min_messages;
SELECT * FROM authctx.security_report();
CREATE ROLE regress_lint_app NOLOGIN IN ROLE authctx_app;
CREATE ROLE regress_lint_creator NOLOGIN;
CREATE ROLE regress_lint_manager NOLOGIN IN ROLE authctx_manager;
SELECT * FROM authctx.security_report();
-- a role that may create in public
GRANT CREATE ON SCHEMA public TO regress_lint_creator;
SELECT * FROM authctx.security_report();
-- a schema named after an application role, owned by someone else: it
-- comes before public in that role's search_path
REVOKE CREATE ON SCHEMA public FROM regress_lint_creator;
CREATE SCHEMA regress_lint_app AUTHORIZATION regress_lint_creator;
SELECT * FROM authctx.security_report();
-- and an auth_begin of its own there
SET ROLE regress_lint_creator;
CREATE FUNCTION regress_lint_app.auth_begin(token varchar) RETURNS text
  LANGUAGE sql AS $$ SELECT 'mine' $$;
GRANT USAGE ON SCHEMA regress_lint_app TO regress_lint_app;
RESET ROLE;
SELECT * FROM authctx.security_report();
-- it works, which is the point
SET ROLE regress_lint_app;
SELECT auth_begin('x'::varchar) AS hijacked;
RESET ROLE;
SET client_min_messages = warning;
DROP SCHEMA regress_lint_app CASCADE;
RESET client_min_messages;
-- CREATE for PUBLIC is one finding, not one per role
GRANT CREATE ON SCHEMA public TO PUBLIC;
SELECT * FROM authctx.security_report();
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- managers may read it; applications may not
SET ROLE regress_lint_manager;
SELECT count(*) AS findings FROM authctx.security_report();
RESET ROLE;
SET ROLE regress_lint_app;
SELECT try('SELECT * FROM authctx.security_report()') AS app_reads_report;
RESET ROLE;

-- ---------------------------------------------------------------- back home
\c :regress_db
SET client_min_messages = warning;
DROP DATABASE regress_authctx_lint WITH (FORCE);
DROP ROLE regress_lint_app, regress_lint_creator, regress_lint_manager;
DROP SCHEMA ta CASCADE;
DROP ROLE regress_ta_owner, regress_ta_other;
