-- Tenant isolation: policies, defaults, lint, admin bypass, missing_context.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tn_app') THEN
    CREATE ROLE tn_app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tn_owner') THEN
    CREATE ROLE tn_owner LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tn_admin') THEN
    CREATE ROLE tn_admin LOGIN;
  END IF;
END $$;
GRANT authctx_app TO tn_app;
GRANT authctx_app TO tn_owner;
GRANT authctx_manager TO tn_owner;
GRANT authctx_admin TO tn_admin;

SELECT authctx.create_tenant('tn-acme') AS acme \gset
SELECT authctx.create_tenant('tn-globex') AS globex \gset
SELECT authctx.create_user('tn-alice@example.com') AS alice \gset
SELECT authctx.create_user('tn-bob@example.com') AS bob \gset
SELECT authctx.add_member('tn-acme', :'alice');
SELECT authctx.add_member('tn-globex', :'bob');
SELECT authctx.create_session(:'alice')::text AS alice_tok \gset
SELECT authctx.create_session(:'bob')::text AS bob_tok \gset

-- A table owned by an ordinary role, isolated by its owner.
CREATE SCHEMA tn AUTHORIZATION tn_owner;
GRANT USAGE ON SCHEMA tn TO tn_app, tn_admin;
SET ROLE tn_owner;
CREATE TABLE tn.notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL, body text);
CREATE TABLE tn.other (id int, tenant_id uuid);
CREATE TABLE tn.no_tenant (id int);
GRANT SELECT, INSERT, UPDATE, DELETE ON tn.notes TO tn_app, tn_admin;
GRANT USAGE ON SEQUENCE tn.notes_id_seq TO tn_app, tn_admin;
SELECT authctx.enable_tenant_isolation('tn.notes');
SELECT authctx.enable_tenant_isolation('tn.notes');  -- idempotent
SELECT polname, polcmd, polroles::regrole[], pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polwithcheck, polrelid) AS check_expr
  FROM pg_policy WHERE polrelid = 'tn.notes'::regclass ORDER BY polname;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tn.notes'::regclass;
SELECT pg_get_expr(adbin, adrelid) AS tenant_default FROM pg_attrdef
 WHERE adrelid = 'tn.notes'::regclass AND adnum = 2;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'tn.notes'::regclass AND indkey[0] = 2;
SELECT * FROM authctx.isolation_report() WHERE table_name::text LIKE 'tn.%';

-- Bad arguments.
SELECT try('SELECT authctx.enable_tenant_isolation(''tn.no_tenant'')') AS no_column;
SELECT try('SELECT authctx.enable_tenant_isolation(''tn.notes'', ''body'')') AS wrong_type;
SELECT try('SELECT authctx.disable_tenant_isolation(''tn.other'')') AS not_isolated;
RESET ROLE;
SET ROLE tn_app;
SELECT try('SELECT authctx.enable_tenant_isolation(''tn.other'')') AS app_may_not;
RESET ROLE;

-- No context: no rows, no writes, for the owner too.
SET ROLE tn_owner;
SELECT count(*) AS owner_sees FROM tn.notes;
SELECT try('INSERT INTO tn.notes (tenant_id, body) VALUES (''' || :'acme' || ''', ''x'')') AS owner_insert;
RESET ROLE;

-- Each tenant sees and writes only its own rows.
SET ROLE tn_app;
BEGIN;
SELECT (auth_begin(:'alice_tok')).role;
INSERT INTO tn.notes (body) VALUES ('acme note 1'), ('acme note 2');
SELECT body, tenant_id = :'acme' AS own_tenant FROM tn.notes ORDER BY id;
COMMIT;
BEGIN;
SELECT (auth_begin(:'bob_tok')).role;
INSERT INTO tn.notes (body) VALUES ('globex note');
SELECT body FROM tn.notes ORDER BY id;
-- cannot insert into, or move a row to, another tenant
SELECT try(format('INSERT INTO tn.notes (tenant_id, body) VALUES (%L, %L)', :'acme', 'sneaky')) AS insert_other;
SELECT try(format('UPDATE tn.notes SET tenant_id = %L', :'acme')) AS move_row;
-- cannot touch the other tenant's rows
UPDATE tn.notes SET body = 'hacked' WHERE body LIKE 'acme%';
DELETE FROM tn.notes WHERE body LIKE 'acme%';
COMMIT;
SELECT count(*) AS no_context_rows FROM tn.notes;
BEGIN;
SELECT (auth_begin(:'alice_tok')).role;
SELECT body FROM tn.notes ORDER BY id;
COMMIT;

-- missing_context = error: a query on an isolated table without a context fails loudly.
SET authctx.missing_context = error;
SELECT try('SELECT count(*) FROM tn.notes') AS missing_error;
SELECT try('INSERT INTO tn.notes (body) VALUES (''x'')') AS missing_error_insert;
BEGIN;
SELECT (auth_begin(:'alice_tok')).role;
SELECT count(*) AS with_context FROM tn.notes;
COMMIT;
RESET authctx.missing_context;
SELECT count(*) AS deny_again FROM tn.notes;
RESET ROLE;

-- Admin bypass: authctx_admin members only, with a reason, audited, this transaction only.
SET ROLE tn_app;
SELECT try('SELECT authctx.admin_begin(''look'')') AS app_refused;
RESET ROLE;
SET ROLE tn_owner;
SELECT try('SELECT authctx.admin_begin(''look'')') AS manager_refused;
RESET ROLE;
SET ROLE tn_admin;
SELECT try('SELECT authctx.admin_begin('''')') AS empty_reason;
SELECT try('SELECT authctx.admin_begin(''   '')') AS blank_reason;
SELECT try('SELECT authctx.admin_begin(NULL)') AS null_reason;
SELECT count(*) AS admin_without_bypass FROM tn.notes;
BEGIN;
SELECT authctx.admin_begin('support ticket 42');
SELECT authctx.admin_bypass(), (authctx.current()).auth_method;
SELECT count(*) AS admin_sees_all FROM tn.notes;
UPDATE tn.notes SET body = body || ' (checked)' WHERE body = 'globex note';
ROLLBACK;
SELECT authctx.admin_bypass() AS bypass_gone, count(*) AS rows_after FROM tn.notes;
RESET ROLE;
-- the admin_bypass event survived the rollback
SELECT event, detail->>'reason' AS reason, db_role
  FROM authctx.audit_log WHERE event = 'admin_bypass' AND detail->>'reason' = 'support ticket 42';

-- isolation_report flags what is missing.
ALTER TABLE tn.notes NO FORCE ROW LEVEL SECURITY;
SELECT table_name, tenant_column, rls_enabled, rls_forced, has_policy, has_index, problem
  FROM authctx.isolation_report() WHERE table_name::text LIKE 'tn.%' ORDER BY 1;
ALTER TABLE tn.notes FORCE ROW LEVEL SECURITY;

-- disable undoes exactly what enable did (and a second table keeps its own state).
SET ROLE tn_owner;
CREATE INDEX other_tenant_idx ON tn.other (tenant_id);
ALTER TABLE tn.other ENABLE ROW LEVEL SECURITY;
ALTER TABLE tn.other ALTER COLUMN tenant_id SET DEFAULT '00000000-0000-0000-0000-000000000000';
SELECT authctx.enable_tenant_isolation('tn.other');
SELECT authctx.disable_tenant_isolation('tn.other');
SELECT relrowsecurity, relforcerowsecurity,
       (SELECT count(*) FROM pg_policy WHERE polrelid = 'tn.other'::regclass) AS policies,
       (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'tn.other'::regclass) AS old_default,
       (SELECT count(*) FROM pg_index WHERE indrelid = 'tn.other'::regclass) AS indexes
  FROM pg_class WHERE oid = 'tn.other'::regclass;
SELECT authctx.disable_tenant_isolation('tn.notes');
SELECT relrowsecurity, relforcerowsecurity,
       (SELECT count(*) FROM pg_policy WHERE polrelid = 'tn.notes'::regclass) AS policies,
       (SELECT count(*) FROM pg_attrdef WHERE adrelid = 'tn.notes'::regclass AND adnum = 2) AS defaults,
       (SELECT count(*) FROM pg_index WHERE indrelid = 'tn.notes'::regclass) AS indexes
  FROM pg_class WHERE oid = 'tn.notes'::regclass;
SELECT authctx.enable_tenant_isolation('tn.notes');

-- partitioned tables
CREATE TABLE tn.parted (tenant_id uuid, v int) PARTITION BY HASH (tenant_id);
CREATE TABLE tn.parted_0 PARTITION OF tn.parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE tn.parted_1 PARTITION OF tn.parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
SELECT authctx.enable_tenant_isolation('tn.parted');
SELECT table_name, problem FROM authctx.isolation_report() WHERE table_name::text LIKE 'tn.parted%' ORDER BY 1;
RESET ROLE;
SET ROLE tn_owner;
SELECT authctx.disable_tenant_isolation('tn.parted');
SELECT c.relname, c.relrowsecurity, count(p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.relname LIKE 'parted%' AND c.relkind IN ('r', 'p')
 GROUP BY 1, 2 ORDER BY 1;
RESET ROLE;
