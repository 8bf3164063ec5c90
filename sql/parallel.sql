-- Parallel workers see the leader's context: a parallel plan under an
-- isolation policy returns exactly the rows the serial plan returns.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pl_app') THEN
    CREATE ROLE pl_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO pl_app;
SELECT authctx.create_tenant('pl-acme') AS acme \gset
SELECT authctx.create_tenant('pl-globex') AS globex \gset
SELECT authctx.create_user('pl-alice@example.com') AS alice \gset
SELECT authctx.add_member('pl-acme', :'alice');
SELECT authctx.create_session(:'alice')::text AS tok \gset

CREATE TABLE public.pl_rows (id int, tenant_id uuid, pad text);
INSERT INTO public.pl_rows
SELECT g, CASE WHEN g % 3 = 0 THEN :'acme'::uuid ELSE :'globex'::uuid END, repeat('x', 100)
  FROM generate_series(1, 30000) g;
ANALYZE public.pl_rows;
SELECT authctx.enable_tenant_isolation('public.pl_rows');
GRANT SELECT ON public.pl_rows TO pl_app;

SET ROLE pl_app;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
BEGIN;
SELECT (auth_begin(:'tok')).role;
SET LOCAL max_parallel_workers_per_gather = 0;
SELECT count(*) AS serial_count, sum(id) AS serial_sum FROM public.pl_rows;
-- With the leader not participating, every row is read by a worker, which
-- evaluates the accessors per row in the FILTER of its partial aggregate
-- (the policy's own tenant_id() is an InitPlan, evaluated once by the
-- leader): the workers must see exactly the leader's context.
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FILTER (WHERE tenant_id = authctx.tenant_id()) FROM public.pl_rows;
SELECT count(*) AS parallel_count, sum(id) AS parallel_sum,
       count(*) FILTER (WHERE authctx.user_id() = :'alice'
                          AND tenant_id = authctx.tenant_id()
                          AND authctx.tenant_id() = :'acme'
                          AND authctx.has_role(authctx.role())
                          AND authctx.session_id() = (authctx.current()).session_id
                          AND (authctx.current()).auth_method = 'session'
                          AND authctx.has_scope('anything')) AS in_workers_ok
  FROM public.pl_rows;
COMMIT;
RESET ROLE;

-- An API key's method, expiry and scopes (one packed hidden setting) reach
-- the workers too: with the leader not participating, every row is
-- evaluated in a worker, which parses the setting it was handed.
SELECT authctx.create_api_key(:'alice', 'pl-acme', 'pl-key', ARRAY['read', 'reports'],
                              '2100-01-01 00:00:00+00')::text AS key \gset
SET ROLE pl_app;
BEGIN;
SELECT (auth_begin(:'key')).auth_method;
SET LOCAL force_parallel_mode = on;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_leader_participation = off;
SELECT count(*) AS rows_seen,
       count(*) FILTER (WHERE authctx.has_scope('read') AND authctx.has_scope('reports')
                          AND NOT authctx.has_scope('write')
                          AND (authctx.current()).auth_method = 'api_key'
                          AND (authctx.current()).expires_at = '2100-01-01 00:00:00+00'
                          AND authctx.tenant_id() = :'acme') AS in_workers_ok
  FROM public.pl_rows;
EXPLAIN (COSTS OFF) SELECT count(*) FILTER (WHERE authctx.has_scope('read')) FROM public.pl_rows;
COMMIT;
RESET ROLE;
