-- Attack: keep a tenant's rows past the end of the context with a WITH HOLD
-- cursor.  A holdable cursor is materialised at COMMIT, while the context is
-- still set, and stays readable on the connection afterwards, which a
-- pooler may hand to another client.  Refused: DECLARE ... WITH HOLD in a
-- transaction that has published a context (or an admin bypass), and the
-- COMMIT of a transaction that declared one and then published a context
-- (the cursor is dropped).  Ordinary cursors, and holdable cursors in
-- transactions without a context, still work.  Simple query protocol here;
-- the extended protocol: test/t/061_attack_holdable_cursor_extended.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse
SELECT current_user AS su \gset

-- roles outlive the test database: quiet when a previous run left them
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hc_app') THEN
    CREATE ROLE hc_app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hc_admin') THEN
    CREATE ROLE hc_admin LOGIN;
  END IF;
END $$;
GRANT authctx_app TO hc_app;
GRANT authctx_admin TO hc_admin;
RESET client_min_messages;
SELECT authctx.create_tenant('hc-acme') AS acme \gset
SELECT authctx.create_tenant('hc-globex') AS globex \gset
SELECT authctx.create_user('hc-alice@example.com') AS alice \gset
SELECT authctx.add_member('hc-acme', :'alice');
SELECT authctx.create_session(:'alice')::text AS tok \gset
CREATE TABLE public.hc_invoices (id int, tenant_id uuid, amount int);
SELECT authctx.enable_tenant_isolation('public.hc_invoices');
INSERT INTO public.hc_invoices VALUES (1, :'acme', 100), (2, :'globex', 200);
CREATE TABLE public.hc_plain (id int);
INSERT INTO public.hc_plain VALUES (1), (2), (3);
GRANT SELECT ON public.hc_invoices, public.hc_plain TO hc_app, hc_admin;

-- ---------------------------------------------------------------- DECLARE after auth_begin
-- (a fresh connection each time: without preloading, the library may be
-- loaded by the very statement under test)
\c - hc_app
BEGIN;
SELECT (auth_begin(:'tok')).role;
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
COMMIT;
FETCH ALL FROM c;
SELECT authctx.user_id() IS NULL AS no_context;

-- and after auth_end: the transaction had a context
BEGIN;
SELECT (auth_begin(:'tok')).role;
SELECT auth_end();
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
ROLLBACK;

-- ---------------------------------------------------------------- DECLARE, then auth_begin
\c - hc_app
BEGIN;
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
SELECT (auth_begin(:'tok')).role;
FETCH 1 FROM c;  -- inside the transaction: its own rows
COMMIT;
FETCH ALL FROM c;
SELECT authctx.user_id() IS NULL AS no_context;
-- the connection goes on normally
SELECT count(*) AS rows_without_context FROM public.hc_invoices;

-- a context published and rolled back in a savepoint still counts
\c - hc_app
BEGIN;
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
SAVEPOINT s;
SELECT (auth_begin(:'tok')).role;
ROLLBACK TO s;
COMMIT;
FETCH ALL FROM c;

-- ---------------------------------------------------------------- the cursor's own query publishes
-- auth_begin inside the held query runs at COMMIT, before the rows are read
\c - hc_app
DECLARE c CURSOR WITH HOLD FOR
  WITH a AS MATERIALIZED (SELECT (auth_begin(:'tok')).role)
  SELECT a.role, i.id, i.amount FROM a, LATERAL (SELECT id, amount FROM public.hc_invoices OFFSET 0) i;
FETCH ALL FROM c;
\c - hc_app
BEGIN;
DECLARE c CURSOR WITH HOLD FOR
  WITH a AS MATERIALIZED (SELECT (auth_begin(:'tok')).role)
  SELECT a.role, i.id, i.amount FROM a, LATERAL (SELECT id, amount FROM public.hc_invoices OFFSET 0) i;
COMMIT;
FETCH ALL FROM c;

-- ---------------------------------------------------------------- admin bypass
\c - hc_admin
BEGIN;
SELECT authctx.admin_begin('holdable cursor test');
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
ROLLBACK;
BEGIN;
DECLARE c CURSOR WITH HOLD FOR SELECT id, amount FROM public.hc_invoices;
SELECT authctx.admin_begin('holdable cursor test');
COMMIT;
FETCH ALL FROM c;

-- ---------------------------------------------------------------- what still works
\c - hc_app
-- an ordinary cursor inside a context
BEGIN;
SELECT (auth_begin(:'tok')).role;
DECLARE d CURSOR FOR SELECT id, amount FROM public.hc_invoices ORDER BY id;
FETCH ALL FROM d;
COMMIT;
-- a holdable cursor in a transaction without a context (isolated rows: none)
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT id FROM public.hc_plain ORDER BY id;
DECLARE hi CURSOR WITH HOLD FOR SELECT id FROM public.hc_invoices ORDER BY id;
COMMIT;
FETCH ALL FROM h;
-- and read in a later transaction that has a context: its rows were read
-- without one
BEGIN;
SELECT (auth_begin(:'tok')).role;
FETCH ALL FROM hi;
COMMIT;
CLOSE h;
CLOSE hi;
-- outside a transaction block, without a context
DECLARE h CURSOR WITH HOLD FOR SELECT id FROM public.hc_plain ORDER BY id;
FETCH ALL FROM h;
CLOSE h;
-- a holdable cursor closed before the context's COMMIT is harmless
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT id FROM public.hc_plain;
SELECT (auth_begin(:'tok')).role;
CLOSE h;
COMMIT;
