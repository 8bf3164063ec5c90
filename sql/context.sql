-- The context is unforgeable: SET, SET LOCAL, set_config, RESET, RESET ALL,
-- DISCARD ALL, ALTER ROLE/DATABASE/SYSTEM ... SET and function SET clauses
-- all fail (or do nothing) for every role, and leave the context unchanged.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cx_app') THEN
    CREATE ROLE cx_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO cx_app;
SELECT authctx.create_tenant('cx-acme') AS acme \gset
SELECT authctx.create_user('cx-alice@example.com') AS alice \gset
SELECT authctx.add_member('cx-acme', :'alice', 'member');
SELECT authctx.create_session(:'alice')::text AS tok \gset

-- As the application role, with a context in place.
SET ROLE cx_app;
BEGIN;
SELECT (auth_begin(:'tok')).role;
SELECT try('SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000''') AS set;
SELECT try('SET LOCAL authctx.user_id = ''00000000-0000-0000-0000-000000000000''') AS set_local;
SELECT try('SET authctx.role TO DEFAULT') AS set_default;
SELECT try('RESET authctx.tenant_id') AS reset;
SELECT try('SELECT set_config(''authctx.tenant_id'', ''00000000-0000-0000-0000-000000000000'', true)') AS set_config_local;
SELECT try('SELECT set_config(''authctx.role'', ''owner'', false)') AS set_config_session;
SELECT try('SELECT set_config(''authctx.tenant_id'', NULL, true)') AS set_config_null;
SELECT try('SELECT set_config(''authctx.credential'', ''admin;;'', true)') AS hidden_method;
SELECT try('SELECT set_config(''authctx.admin_bypass'', ''on'', true)') AS hidden_bypass;
SELECT try('SELECT set_config(''authctx.credential'', ''api_key;;x'', true)') AS hidden_scopes;
RESET ALL;
SELECT authctx.tenant_id() = :'acme' AS still_acme, authctx.role() AS still_member,
       current_setting('authctx.tenant_id') = :'acme' AS guc_unchanged,
       current_setting('authctx.admin_bypass') = '' AS no_bypass;
COMMIT;

-- The same attempts as a superuser, and the catalog-stored kinds.
RESET ROLE;
BEGIN;
SELECT (auth_begin(:'tok')).role;
SELECT try('SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000''') AS su_set;
SELECT try('RESET authctx.user_id') AS su_reset;
SELECT try('SELECT set_config(''authctx.user_id'', NULL, true)') AS su_set_config_null;
SELECT try('SELECT set_config(''authctx.session_id'', ''00000000-0000-0000-0000-000000000000'', true)') AS su_set_config;
DISCARD TEMP;
SELECT authctx.user_id() = :'alice' AS su_still_alice;
COMMIT;
SELECT try('ALTER ROLE cx_app SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000''') AS alter_role;
SELECT try('ALTER ROLE cx_app IN DATABASE contrib_regression SET authctx.user_id = ''00000000-0000-0000-0000-000000000000''') AS alter_role_in_db;
SELECT try('ALTER DATABASE contrib_regression SET authctx.role = ''owner''') AS alter_database;
SELECT try('ALTER SYSTEM SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000''') AS alter_system;
SELECT try('CREATE FUNCTION public.cx_forge() RETURNS uuid LANGUAGE sql SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000'' AS ''SELECT authctx.tenant_id()''') AS function_set_clause;
CREATE FUNCTION public.cx_plain() RETURNS uuid LANGUAGE sql AS 'SELECT authctx.tenant_id()';
SELECT try('ALTER FUNCTION public.cx_plain() SET authctx.tenant_id = ''00000000-0000-0000-0000-000000000000''') AS alter_function_set;
SELECT count(*) AS stored_settings FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ',') LIKE '%authctx.%';

-- Outside a transaction block: nothing set, nothing settable.
SELECT try('SET authctx.user_id = ''00000000-0000-0000-0000-000000000000''') AS set_no_context;
SELECT current_setting('authctx.user_id') AS still_empty;
-- Placeholders under the reserved prefix are refused too.
SELECT try('SET authctx.no_such_setting = 1') AS reserved_prefix;
-- missing_context stays an ordinary setting anyone may change.
SET ROLE cx_app;
SET authctx.missing_context = error;
SHOW authctx.missing_context;
RESET authctx.missing_context;
SELECT try('SET authctx.missing_context = ''sometimes''') AS bad_value;
RESET ROLE;
-- DISCARD ALL cannot run in a transaction; outside one there is no context to keep.
DISCARD ALL;
SELECT current_setting('authctx.tenant_id') AS after_discard_all;
