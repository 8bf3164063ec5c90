-- Attack: receive tokens through an overload of auth_begin.  A role with
-- CREATE on schema public creates public.auth_begin(varchar): function
-- resolution prefers an exact match, so every token a driver binds as
-- varchar (pgjdbc does by default) would go to it.  authctx provides the
-- varchar signatures itself (every text/varchar combination of the two-
-- argument form), so those cannot be created, and calls with text,
-- varchar or untyped arguments all reach the extension's function; other
-- string overloads someone may create do not change that.  Runs in a
-- database of its own, so that hostile objects touch no other test.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_authctx_overload;
\c regress_authctx_overload
SET client_min_messages = warning;
CREATE EXTENSION authctx;
RESET client_min_messages;

\i test/support/try.sql

-- roles outlive the test database: quiet when a previous run left them
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ov_hijacker') THEN
    CREATE ROLE ov_hijacker NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ov_app') THEN
    CREATE ROLE ov_app NOLOGIN;
  END IF;
END $$;
GRANT authctx_app TO ov_app;
RESET client_min_messages;
GRANT CREATE ON SCHEMA public TO ov_hijacker;
SELECT authctx.create_tenant('ov-acme') AS acme \gset
SELECT authctx.create_user('ov-alice@example.com') AS alice \gset
SELECT authctx.add_member('ov-acme', :'alice');
SELECT authctx.create_session(:'alice')::text AS tok \gset
-- where a hijacking function would put what it receives
CREATE TABLE public.ov_stolen (token text);
GRANT INSERT ON public.ov_stolen TO PUBLIC;

-- the extension's own signatures
SELECT p.oid::regprocedure AS ours, p.prosrc
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
 WHERE p.proname = 'auth_begin' ORDER BY 1::text;

-- ---------------------------------------------------------------- the hijacker
SET ROLE ov_hijacker;
-- the exact matches for a token bound as varchar: all taken
SELECT try($$CREATE FUNCTION public.auth_begin(token varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS varchar_1;
SELECT try($$CREATE FUNCTION public.auth_begin(token varchar, tenant varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS varchar_varchar;
SELECT try($$CREATE FUNCTION public.auth_begin(token text, tenant varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS text_varchar;
SELECT try($$CREATE FUNCTION public.auth_begin(token varchar, tenant text) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS varchar_text;
SELECT try($$CREATE OR REPLACE FUNCTION public.auth_begin(token varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS or_replace;
-- near misses, which can be created: none is chosen for a text, varchar or
-- untyped argument
SELECT try($$CREATE FUNCTION public.auth_begin(token name) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS name_1;
SELECT try($$CREATE FUNCTION public.auth_begin(token char) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS bpchar_1;
SELECT try($$CREATE FUNCTION public.auth_begin(VARIADIC token varchar[]) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1[1]) RETURNING NULL::authctx.context'$$) AS variadic_varchar;
SELECT try($$CREATE FUNCTION public.auth_begin(token varchar, tenant name) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context'$$) AS varchar_name;
RESET ROLE;

-- ---------------------------------------------------------------- the application
SET ROLE ov_app;
PREPARE v1(varchar) AS SELECT (auth_begin($1)).role;
PREPARE v2(varchar, varchar) AS SELECT (auth_begin($1, $2)).role;
PREPARE tv(text, varchar) AS SELECT (auth_begin($1, $2)).role;
PREPARE vt(varchar, text) AS SELECT (auth_begin($1, $2)).role;
PREPARE t1(text) AS SELECT (auth_begin($1)).role;
PREPARE t2(text, text) AS SELECT (auth_begin($1, $2)).role;
PREPARE u1 AS SELECT (auth_begin($1)).role;
PREPARE u2 AS SELECT (auth_begin($1, $2)).role;
PREPARE vu(varchar) AS SELECT (auth_begin($1, 'ov-acme')).role;
BEGIN; EXECUTE v1(:'tok'); COMMIT;
BEGIN; EXECUTE v2(:'tok', 'ov-acme'); COMMIT;
BEGIN; EXECUTE tv(:'tok', 'ov-acme'); COMMIT;
BEGIN; EXECUTE vt(:'tok', 'ov-acme'); COMMIT;
BEGIN; EXECUTE t1(:'tok'); COMMIT;
BEGIN; EXECUTE t2(:'tok', 'ov-acme'); COMMIT;
BEGIN; EXECUTE u1(:'tok'); COMMIT;
BEGIN; EXECUTE u2(:'tok', 'ov-acme'); COMMIT;
BEGIN; EXECUTE vu(:'tok'); COMMIT;
BEGIN; SELECT (auth_begin(:'tok')).role AS literal; COMMIT;
BEGIN; SELECT (auth_begin(:'tok'::varchar)).role AS cast_varchar; COMMIT;
BEGIN; SELECT (auth_begin(token => :'tok'::varchar, tenant => 'ov-acme')).role AS named; COMMIT;
-- the call form to recommend to drivers
PREPARE safe(varchar) AS SELECT (public.auth_begin($1::text)).role;
BEGIN; EXECUTE safe(:'tok'); COMMIT;
RESET ROLE;
SELECT count(*) AS tokens_stolen FROM public.ov_stolen;

-- An identical signature in a schema earlier in the search path ("$user")
-- would still win an unqualified call (isolation_report's lint is for
-- that); the schema-qualified call with a text cast does not see it.
CREATE SCHEMA ov_app AUTHORIZATION ov_hijacker;
SET ROLE ov_hijacker;
CREATE FUNCTION ov_app.auth_begin(token text) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context';
CREATE FUNCTION ov_app.auth_begin(token varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context';
GRANT USAGE ON SCHEMA ov_app TO ov_app;
RESET ROLE;
SET ROLE ov_app;
SHOW search_path;
PREPARE safe2(varchar) AS SELECT (public.auth_begin($1::text)).role;
BEGIN; EXECUTE safe2(:'tok'); COMMIT;
RESET ROLE;
SELECT count(*) AS tokens_stolen FROM public.ov_stolen;

-- An overload with a defaulted extra argument makes the call ambiguous: it
-- fails, and still receives nothing.
SET ROLE ov_hijacker;
CREATE FUNCTION public.auth_begin(token varchar, tenant varchar, extra int DEFAULT 0) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context';
RESET ROLE;
SET ROLE ov_app;
SELECT try($$SELECT auth_begin('x'::varchar, 'ov-acme'::varchar)$$) AS ambiguous;
RESET ROLE;
SELECT count(*) AS tokens_stolen FROM public.ov_stolen;

-- A database still at 0.1.0, where the hijacker got there first: the
-- update refuses to go on, naming the function.
SET client_min_messages = warning;
DROP EXTENSION authctx CASCADE;
CREATE EXTENSION authctx VERSION '0.1.0';
RESET client_min_messages;
SET ROLE ov_hijacker;
CREATE FUNCTION public.auth_begin(token varchar) RETURNS authctx.context
  LANGUAGE sql AS 'INSERT INTO public.ov_stolen VALUES ($1) RETURNING NULL::authctx.context';
RESET ROLE;
SELECT try('ALTER EXTENSION authctx UPDATE') AS update_refused;
SELECT extversion FROM pg_extension WHERE extname = 'authctx';
DROP FUNCTION public.auth_begin(varchar);
ALTER EXTENSION authctx UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'authctx';
SELECT authctx.create_tenant('ov-acme') AS acme \gset
SELECT authctx.create_user('ov-alice@example.com') AS alice \gset
SELECT authctx.add_member('ov-acme', :'alice');
SELECT authctx.create_session(:'alice')::text AS tok \gset
SET ROLE ov_app;
BEGIN; EXECUTE v1(:'tok'); COMMIT;
RESET ROLE;
SELECT count(*) AS tokens_stolen FROM public.ov_stolen;

\c :regress_db
DROP DATABASE regress_authctx_overload;
