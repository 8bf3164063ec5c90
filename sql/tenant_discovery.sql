-- Tenant discovery (list_memberships, my_tenants, list_tenants) and the
-- messages auth_begin and an isolated table give when a tenant is missing
-- or not allowed: every 42501 and 28000 says what to do, naming nothing
-- that exists.  Runs in both preload modes.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'

CREATE ROLE regress_td_app NOLOGIN IN ROLE authctx_app;
CREATE ROLE regress_td_manager NOLOGIN IN ROLE authctx_manager;
CREATE ROLE regress_td_admin NOLOGIN IN ROLE authctx_admin;
CREATE ROLE regress_td_nobody NOLOGIN;

-- ---------------------------------------------------------------- setup
SET ROLE regress_td_manager;
SELECT authctx.create_tenant('td-acme', 'Acme Inc.') AS acme \gset
SELECT authctx.create_tenant('td-globex', 'Globex') AS globex \gset
SELECT authctx.create_tenant('td-initech') AS initech \gset
SELECT authctx.create_user('alice@td.test') AS alice \gset
SELECT authctx.create_user('bob@td.test') AS bob \gset
SELECT authctx.create_user('carol@td.test') AS carol \gset
SELECT authctx.add_member('td-globex', :'alice'), authctx.add_member('td-acme', :'alice', 'owner'),
       authctx.add_member('td-globex', :'bob', 'admin');
-- alice is in two tenants: her session has none until auth_begin names one
SELECT authctx.create_session(:'alice') AS alice_s \gset
SELECT authctx.create_session(:'bob') AS bob_s \gset
SELECT authctx.create_api_key(:'alice', 'td-acme', 'ci', '{invoices:read}') AS alice_k \gset
RESET ROLE;

CREATE TABLE td_invoices (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL, amount numeric NOT NULL);
SELECT authctx.enable_tenant_isolation('td_invoices');
GRANT SELECT, INSERT, UPDATE, DELETE ON td_invoices TO regress_td_app;
GRANT USAGE ON SEQUENCE td_invoices_id_seq TO regress_td_app;

-- ---------------------------------------------------------------- list_memberships
SET ROLE regress_td_manager;
-- columns as the contract fixes them
SELECT array_agg(c.parameter_name::text || ' ' || c.data_type ORDER BY c.ordinal_position) AS columns
  FROM information_schema.routines r
  JOIN information_schema.parameters c ON c.specific_name = r.specific_name
 WHERE r.routine_schema = 'authctx' AND r.routine_name IN ('list_memberships', 'my_tenants', 'list_tenants')
   AND c.parameter_mode = 'OUT'
 GROUP BY r.routine_name ORDER BY r.routine_name;
SELECT slug, name, role, tenant_id = CASE slug WHEN 'td-acme' THEN :'acme'::uuid ELSE :'globex'::uuid END AS id_ok,
       created_at <= clock_timestamp() AS created
  FROM authctx.list_memberships(:'alice');
SELECT slug, role FROM authctx.list_memberships(:'bob');
SELECT count(*) AS carol_memberships FROM authctx.list_memberships(:'carol');
-- an unknown user, or NULL, has none (as in list_sessions)
SELECT count(*) AS unknown FROM authctx.list_memberships('00000000-0000-4000-8000-000000000000');
SELECT count(*) AS null_user FROM authctx.list_memberships(NULL);

-- ---------------------------------------------------------------- list_tenants
SELECT slug, name, tenant_id IS NOT NULL AS has_id
  FROM authctx.list_tenants() WHERE slug LIKE 'td-%';
-- a read-only transaction is enough for both
BEGIN READ ONLY;
SELECT count(*) > 0 AS listed FROM authctx.list_tenants();
SELECT count(*) AS alice FROM authctx.list_memberships(:'alice');
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------- my_tenants
SET ROLE regress_td_app;
-- no context: 28000 with a hint
SELECT * FROM authctx.my_tenants();
-- the tenant switcher: auth_begin without a tenant, list, then name one
BEGIN;
SELECT tenant_id IS NULL AS no_tenant, role FROM auth_begin(:'alice_s');
SELECT slug, name, role FROM authctx.my_tenants();
SELECT tenant_id = :'globex' AS in_globex, role FROM auth_begin(:'alice_s', 'td-globex');
SELECT slug, role FROM authctx.my_tenants();
-- auth_end clears the context: my_tenants refuses again
SELECT auth_end();
SELECT * FROM authctx.my_tenants();
ROLLBACK;
-- the context of an earlier transaction does not count
SELECT 1 FROM auth_begin(:'alice_s');
SELECT * FROM authctx.my_tenants();
-- a forged context counts neither (the settings refuse it, the function
-- reads only what auth_begin published)
BEGIN;
SELECT set_config('authctx.user_id', :'alice', true);
ROLLBACK;
BEGIN;
SELECT * FROM authctx.my_tenants();
ROLLBACK;
-- an API key sees its own tenant only, not its user's other tenants
BEGIN;
SELECT 1 FROM auth_begin(:'alice_k');
SELECT slug, role FROM authctx.my_tenants();
COMMIT;
-- bob, one tenant; a read-only transaction is enough
BEGIN READ ONLY;
SELECT 1 FROM auth_begin(:'bob_s');
SELECT slug, role FROM authctx.my_tenants();
COMMIT;
-- the app may not list other users' memberships, nor every tenant
SELECT * FROM authctx.list_memberships(:'alice');
SELECT * FROM authctx.list_tenants();
RESET ROLE;

-- a membership removed is gone from the list at once
SET ROLE regress_td_manager;
SELECT authctx.remove_member('td-globex', :'alice');
RESET ROLE;
SET ROLE regress_td_app;
BEGIN;
SELECT 1 FROM auth_begin(:'alice_s');
SELECT slug, role FROM authctx.my_tenants();
COMMIT;
RESET ROLE;
SET ROLE regress_td_manager;
SELECT authctx.add_member('td-globex', :'alice');
RESET ROLE;

-- admin_begin alone is no user context
SET ROLE regress_td_admin;
BEGIN;
SELECT authctx.admin_begin('tenant discovery test');
SELECT * FROM authctx.my_tenants();
ROLLBACK;
RESET ROLE;

-- a stranger may call none of them
SET ROLE regress_td_nobody;
SELECT * FROM authctx.my_tenants();
SELECT * FROM authctx.list_tenants();
SELECT * FROM authctx.list_memberships(:'alice');
RESET ROLE;

-- ---------------------------------------------------------------- auth_begin's refusals
SET ROLE regress_td_app;
-- a key used with another tenant: one message whether the tenant exists,
-- whether its user belongs to it, by slug or by uuid
SELECT auth_begin(:'alice_k', 'td-globex');
SELECT auth_begin(:'alice_k', :'globex');
SELECT auth_begin(:'alice_k', 'td-initech');
SELECT auth_begin(:'alice_k', :'initech');
SELECT auth_begin(:'alice_k', 'td-no-such-tenant');
SELECT auth_begin(:'alice_k', '00000000-0000-4000-8000-000000000000');
-- its own tenant, by slug or uuid (upper case too), or none
SELECT role FROM auth_begin(:'alice_k', 'td-acme');
SELECT role FROM auth_begin(:'alice_k', upper(:'acme'));
SELECT role FROM auth_begin(:'alice_k');
-- a session: not a member, or no such tenant, one message
SELECT auth_begin(:'alice_s', 'td-initech');
SELECT auth_begin(:'alice_s', 'td-no-such-tenant');
SELECT auth_begin(:'alice_s', '00000000-0000-4000-8000-000000000000');
-- any authentication failure: 28000, one message and hint
SELECT auth_begin('axs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
SELECT auth_begin(NULL);
SELECT auth_begin('not a token', 'td-acme');
RESET ROLE;

-- a key whose user left its tenant: not a member (its own tenant, named or not)
SET ROLE regress_td_manager;
SELECT authctx.remove_member('td-acme', :'alice');
RESET ROLE;
SET ROLE regress_td_app;
SELECT auth_begin(:'alice_k');
SELECT auth_begin(:'alice_k', 'td-acme');
SELECT auth_begin(:'alice_k', 'td-globex');
RESET ROLE;
SET ROLE regress_td_manager;
SELECT authctx.add_member('td-acme', :'alice', 'owner');
RESET ROLE;

-- ---------------------------------------------------------------- writes refused for want of a tenant
SET ROLE regress_td_app;
-- no context at all (missing_context = deny): core's message, a hint naming auth_begin
INSERT INTO td_invoices (amount) VALUES (1);
-- a context without a tenant
BEGIN;
SELECT 1 FROM auth_begin(:'alice_s');
INSERT INTO td_invoices (amount) VALUES (1);
ROLLBACK;
-- a tenant, but a row for another: no hint (nothing to call)
BEGIN;
SELECT 1 FROM auth_begin(:'alice_s', 'td-acme');
INSERT INTO td_invoices (tenant_id, amount) VALUES (:'globex', 1);
ROLLBACK;
-- the right tenant: the row goes in
BEGIN;
SELECT 1 FROM auth_begin(:'alice_s', 'td-acme');
INSERT INTO td_invoices (amount) VALUES (1);
SELECT amount, tenant_id = :'acme' AS acme FROM td_invoices;
ROLLBACK;
-- missing_context = error: authctx's own message, before any policy
SET authctx.missing_context = error;
INSERT INTO td_invoices (amount) VALUES (1);
RESET authctx.missing_context;
-- without a context nothing is read or changed, and no error
SELECT count(*) FROM td_invoices;
UPDATE td_invoices SET amount = 2;
RESET ROLE;

-- ---------------------------------------------------------------- clean up
DROP TABLE td_invoices;
DROP ROLE regress_td_app, regress_td_manager, regress_td_admin, regress_td_nobody;
