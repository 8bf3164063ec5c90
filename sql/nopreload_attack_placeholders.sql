-- Attack: forge the context with placeholders, without preloading.
--
-- In a backend that has not loaded authctx yet, SET / SET LOCAL /
-- set_config() / a function's SET clause on authctx.* create placeholder
-- variables; when the library loads, DefineCustomStringVariable re-applies
-- them.  None may survive: after the load, the accessors, current_setting(),
-- authctx.current(), has_scope(), admin_bypass() and an isolated table must
-- all show no context, for all six parameters (the hidden credential and
-- admin_bypass included).  Every block starts on a fresh connection (\c), so
-- the library is not loaded when the values are set.  Connection options,
-- stored role/database settings and postgresql.conf are covered by
-- test/t/060_attack_placeholder_settings.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse
SELECT current_user AS su \gset

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ap_app') THEN
    CREATE ROLE ap_app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ap_admin') THEN
    CREATE ROLE ap_admin LOGIN;
  END IF;
END $$;
GRANT authctx_app TO ap_app;
GRANT authctx_admin TO ap_admin;
SELECT authctx.create_tenant('ap-acme') AS acme \gset
SELECT authctx.create_tenant('ap-globex') AS globex \gset
SELECT authctx.create_user('ap-alice@example.com') AS alice \gset
SELECT authctx.create_user('ap-bob@example.com') AS bob \gset
SELECT authctx.add_member('ap-acme', :'alice'), authctx.add_member('ap-globex', :'bob', 'owner');
SELECT authctx.create_api_key(:'alice', 'ap-acme', 'ap-reader', ARRAY['inv:read'])::text AS key \gset
SELECT gen_random_uuid() AS bob_sid \gset

CREATE TABLE public.ap_invoices (id int, tenant_id uuid, amount int);
SELECT authctx.enable_tenant_isolation('public.ap_invoices');
INSERT INTO public.ap_invoices VALUES (1, :'acme', 100), (2, :'globex', 200);
GRANT SELECT ON public.ap_invoices TO ap_app, ap_admin;

-- What leaked: the accessors, the settings, the isolated table.
CREATE FUNCTION public.ap_leaks() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  leaks text[] := '{}';
  bypass boolean;
  n text;
BEGIN
  IF authctx.user_id() IS NOT NULL THEN leaks := leaks || 'user_id()'::text; END IF;
  IF authctx.tenant_id() IS NOT NULL THEN leaks := leaks || 'tenant_id()'::text; END IF;
  IF authctx.role() IS NOT NULL THEN leaks := leaks || 'role()'::text; END IF;
  IF authctx.session_id() IS NOT NULL THEN leaks := leaks || 'session_id()'::text; END IF;
  IF authctx.current() IS NOT NULL THEN leaks := leaks || 'current()'::text; END IF;
  IF authctx.is_authenticated() THEN leaks := leaks || 'is_authenticated()'::text; END IF;
  IF authctx.has_role('owner') THEN leaks := leaks || 'has_role()'::text; END IF;
  IF authctx.has_scope('inv:delete') THEN leaks := leaks || 'has_scope()'::text; END IF;
  IF authctx.amr() IS NOT NULL THEN leaks := leaks || 'amr()'::text; END IF;
  IF authctx.claims() IS NOT NULL THEN leaks := leaks || 'claims()'::text; END IF;
  IF pg_has_role('authctx_admin', 'MEMBER') THEN
    EXECUTE 'SELECT authctx.admin_bypass()' INTO bypass;
    IF bypass THEN leaks := leaks || 'admin_bypass()'::text; END IF;
  END IF;
  FOREACH n IN ARRAY ARRAY['user_id', 'tenant_id', 'role', 'session_id', 'credential', 'admin_bypass', 'claims'] LOOP
    IF current_setting('authctx.' || n, true) <> '' THEN
      leaks := leaks || ('setting ' || n);
    END IF;
  END LOOP;
  IF EXISTS (SELECT 1 FROM public.ap_invoices) THEN leaks := leaks || 'isolated rows'::text; END IF;
  RETURN coalesce(nullif(array_to_string(leaks, ', '), ''), 'nothing');
END
$$;

-- A function with SET clauses, created by a superuser in a backend that has
-- not loaded the library (so no utility hook refuses them).
\c - :su
CREATE FUNCTION public.ap_forged_count() RETURNS bigint LANGUAGE sql
  SET authctx.user_id = :'bob'
  SET authctx.tenant_id = :'globex'
  SET authctx.credential = 'session;;'
  AS 'SELECT count(*) FROM public.ap_invoices';

-- ---------------------------------------------------------------- SET
\c - ap_app
SET authctx.user_id = :'bob';
SET authctx.tenant_id = :'globex';
SET authctx.role = 'owner';
SET authctx.session_id = :'bob_sid';
SET authctx.credential = 'api_key;;inv:delete';
SET authctx.admin_bypass = 'forged';
SET authctx.claims = '{"sub":"admin"}';
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_after_set;
-- and RESET cannot bring a discarded value back
RESET authctx.tenant_id;
SELECT public.ap_leaks() AS leaked_after_reset;

-- ---------------------------------------------------------------- SET LOCAL
\c - ap_app
BEGIN;
SET LOCAL authctx.user_id = :'bob';
SET LOCAL authctx.tenant_id = :'globex';
SET LOCAL authctx.role = 'owner';
SET LOCAL authctx.session_id = :'bob_sid';
SET LOCAL authctx.credential = 'api_key;;inv:delete';
SET LOCAL authctx.admin_bypass = 'forged';
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_in_transaction;
COMMIT;
SELECT public.ap_leaks() AS leaked_after_commit;

-- ---------------------------------------------------------------- set_config, session
\c - ap_app
SELECT set_config('authctx.' || n, v, false) IS NOT NULL AS placeholder_set
  FROM (VALUES ('user_id', :'bob'), ('tenant_id', :'globex'), ('role', 'owner'),
               ('session_id', :'bob_sid'), ('credential', 'api_key;;inv:delete'),
               ('admin_bypass', 'forged')) AS s(n, v);
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_after_set_config;

-- ---------------------------------------------------------------- set_config, local
\c - ap_app
BEGIN;
SELECT set_config('authctx.' || n, v, true) IS NOT NULL AS placeholder_set
  FROM (VALUES ('user_id', :'bob'), ('tenant_id', :'globex'), ('role', 'owner'),
               ('session_id', :'bob_sid'), ('credential', 'api_key;;inv:delete'),
               ('admin_bypass', 'forged')) AS s(n, v);
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_after_set_config_local;
COMMIT;

-- ---------------------------------------------------------------- stacked values
-- a session value, a local one in a savepoint, then ROLLBACK TO: every
-- level of the placeholder's stack is re-applied at load, none survives
\c - ap_app
SET authctx.tenant_id = :'globex';
SET authctx.user_id = :'bob';
BEGIN;
SAVEPOINT s1;
SET LOCAL authctx.tenant_id = :'acme';
SELECT set_config('authctx.credential', 'api_key;;inv:delete', true) IS NOT NULL AS placeholder_set;
SAVEPOINT s2;
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_in_savepoint;
ROLLBACK TO s2;
SELECT public.ap_leaks() AS leaked_after_rollback_to_s2;
ROLLBACK TO s1;
SELECT public.ap_leaks() AS leaked_after_rollback_to_s1;
COMMIT;
SELECT public.ap_leaks() AS leaked_after_commit;

-- ---------------------------------------------------------------- function SET clause
\c - ap_app
SELECT public.ap_forged_count() AS rows_seen_by_function;
SELECT public.ap_leaks() AS leaked_after_function;
-- once loaded, the stored clause is refused outright
SELECT public.ap_forged_count() AS rows_seen_by_function;

-- ---------------------------------------------------------------- admin_bypass
-- a member of authctx_admin forging the bypass instead of calling the
-- audited admin_begin: the admin policy must stay closed
\c - ap_admin
SET authctx.admin_bypass = 'forged';
SET authctx.credential = 'admin;;';
SELECT count(*) AS rows_seen FROM public.ap_invoices;
SELECT public.ap_leaks() AS leaked_to_admin;

-- ---------------------------------------------------------------- then a real context
-- forged values set first, auth_begin loads the library: the context is
-- the key's own (its tenant, its one scope), and nothing remains after it
\c - ap_app
SET authctx.tenant_id = :'globex';
SET authctx.credential = E'api_key;;inv:read\ninv:delete';
SET authctx.admin_bypass = 'forged';
BEGIN;
SELECT (auth_begin(:'key')).auth_method;
SELECT authctx.tenant_id() = :'acme' AS own_tenant, authctx.has_scope('inv:read') AS can_read,
       authctx.has_scope('inv:delete') AS can_delete,
       (SELECT count(*) FROM public.ap_invoices) AS rows_seen;
SELECT auth_end();
SELECT public.ap_leaks() AS leaked_after_auth_end;
COMMIT;
SELECT public.ap_leaks() AS leaked_after_commit;

\c - :su
DROP FUNCTION public.ap_forged_count();
