-- bench/load.sql: fill one benchmark database (run by bench/run as the
-- bootstrap superuser, with psql variables):
--   nsess     live sessions whose tokens the workloads present
--   nusers    users (sessions are spread over them round-robin)
--   ntenants  tenants (user u is a member of tenant 1 + (u-1) % ntenants)
--   ndecoy    extra sessions stored with another token's verifier, for the
--             "wrong secret" rejection test (their real token is unknown)
--   npool     extra sessions that the revocation test revokes in order
--   items     1 to create the RLS tables (items_rls, items_plain), else 0
--   revoke    'function' to revoke through authctx.revoke_session(uuid),
--             'update' to set revoked_at directly (before that function exists)
--
-- Last-seen times: every session's last_seen_at is drawn uniformly from the
-- last W seconds, W being the interval at which authctx records a use (a
-- tenth of authctx.session_idle_timeout, 6 minutes with the default 1 h;
-- authctx.last_seen_interval with the idle timeout off).  That is the steady
-- state of a population whose sessions are each used more often than every
-- W: the recorded time lags the last use by less than W, evenly spread.  So
-- every session is live (well within the idle timeout) and, from the first
-- request on, a request owes a last-seen write when its session's time has
-- passed W since: at most one per session per W, the write rate a real
-- deployment of that size sees (bounded by sessions / W, not by requests).
-- The hand-written tables get the same times.
--
-- Rows are inserted directly (authctx._token_new, _token_id, _token_verifier)
-- rather than through create_session(): loading a million sessions through
-- the public functions would take longer than the benchmark itself.
-- Session i belongs to user 1 + (i-1) % nusers and to that user's tenant,
-- which is 1 + (i-1) % ntenants because nusers is a multiple of ntenants;
-- pgbench scripts use this to know a token's tenant without a query.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS authctx;
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
CREATE SCHEMA bench;

-- W (above), in seconds, from the server's settings (raw values, in seconds)
SELECT CASE WHEN (SELECT setting::int FROM pg_settings WHERE name = 'authctx.session_idle_timeout') > 0
            THEN (SELECT setting::int FROM pg_settings WHERE name = 'authctx.session_idle_timeout') / 10
            ELSE (SELECT setting::int FROM pg_settings WHERE name = 'authctx.last_seen_interval') END
       AS seen_window \gset

-- Deterministic ids, so that pgbench can name a tenant by number.
CREATE FUNCTION bench.tenant_uuid(n int) RETURNS uuid
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION bench.user_uuid(n int) RETURNS uuid
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid $$;

-- identity ------------------------------------------------------------------
INSERT INTO authctx.tenants (id, slug, name)
SELECT bench.tenant_uuid(n), 'bench-t' || n, 'Tenant ' || n
  FROM generate_series(1, :ntenants) n;
INSERT INTO authctx.users (id, email)
SELECT bench.user_uuid(n), 'user' || n || '@bench.example'
  FROM generate_series(1, :nusers) n;
INSERT INTO authctx.memberships (tenant_id, user_id, role)
SELECT bench.tenant_uuid(1 + (n - 1) % :ntenants), bench.user_uuid(n),
       CASE WHEN n % 10 = 0 THEN 'admin' ELSE 'member' END
  FROM generate_series(1, :nusers) n;

-- sessions ------------------------------------------------------------------
-- bench.tokens: the token text of every live session, with the values that
-- auth_begin publishes for it, so the floor variant can publish the same
-- values without looking anything up, and the JSON-claims variant has its
-- claims ready-made (as an API gateway would after checking a JWT).
CREATE TABLE bench.tokens (
  i           int PRIMARY KEY,
  t           text NOT NULL,
  session_id  uuid NOT NULL,
  user_id     uuid NOT NULL,
  tenant_id   uuid NOT NULL,
  role        text NOT NULL,
  expires_at  timestamptz NOT NULL,
  claims      text NOT NULL
);

CREATE TEMP TABLE gen AS
SELECT i, authctx._token_new('session') AS tok
  FROM generate_series(1, :nsess) i;

INSERT INTO bench.tokens
SELECT i, t, session_id, user_id, tenant_id, role, expires_at,
       json_build_object('sub', user_id, 'tenant_id', tenant_id, 'role', role,
                         'session_id', session_id,
                         'exp', extract(epoch FROM expires_at)::bigint)::text
  FROM (SELECT g.i, g.tok::text AS t, authctx._token_id(g.tok) AS session_id,
               bench.user_uuid(1 + (g.i - 1) % :nusers) AS user_id,
               bench.tenant_uuid(1 + (g.i - 1) % :ntenants) AS tenant_id,
               CASE WHEN (1 + (g.i - 1) % :nusers) % 10 = 0 THEN 'admin' ELSE 'member' END AS role,
               date_trunc('second', now()) + interval '1 day' AS expires_at
          FROM gen g) x;

-- last_seen_at spread over the last W seconds (see the top of this file)
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, last_seen_at, expires_at)
SELECT authctx._token_id(g.tok),
       bench.user_uuid(1 + (g.i - 1) % :nusers),
       bench.tenant_uuid(1 + (g.i - 1) % :ntenants),
       gen_random_uuid(), authctx._token_verifier(g.tok),
       now() - random() * make_interval(secs => :seen_window),
       date_trunc('second', now()) + interval '1 day'
  FROM gen g
 ORDER BY 1;

-- The hand-written equivalent a team would build today: its own copies of
-- users, memberships and sessions (same rows), sessions keyed by the
-- SHA-256 of the token text.
CREATE TABLE public.hw_users (
  id          uuid PRIMARY KEY,
  email       text NOT NULL,
  disabled_at timestamptz
);
CREATE TABLE public.hw_memberships (
  tenant_id uuid NOT NULL,
  user_id   uuid NOT NULL,
  role      text NOT NULL,
  PRIMARY KEY (tenant_id, user_id)
);
-- Fill factor 80, as authctx.sessions has, so that the handwritten_seen
-- variant's last-seen UPDATEs can be HOT like authctx's own writes.
CREATE TABLE public.hw_sessions (
  id           uuid NOT NULL,
  token_hash   bytea NOT NULL,
  user_id      uuid NOT NULL,
  tenant_id    uuid,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz
) WITH (fillfactor = 80);
INSERT INTO public.hw_users (id, email) SELECT id, email FROM authctx.users;
INSERT INTO public.hw_memberships SELECT tenant_id, user_id, role FROM authctx.memberships;
INSERT INTO public.hw_sessions (id, token_hash, user_id, tenant_id, last_seen_at, expires_at)
SELECT b.session_id, sha256(convert_to(b.t, 'UTF8')), b.user_id, b.tenant_id, s.last_seen_at, b.expires_at
  FROM bench.tokens b JOIN authctx.sessions s ON s.id = b.session_id;
ALTER TABLE public.hw_sessions ADD PRIMARY KEY (id), ADD UNIQUE (token_hash);
CREATE INDEX hw_sessions_user_idx ON public.hw_sessions (user_id);

-- rejection: unknown ids, and known ids presented with a wrong secret ---------
-- A decoy session row carries the id of token A and the verifier of token B;
-- presenting A finds the row and fails the comparison.
CREATE TABLE bench.unknown (i int PRIMARY KEY, t text NOT NULL);
INSERT INTO bench.unknown
SELECT i, authctx._token_new('session')::text FROM generate_series(1, :ndecoy) i;

CREATE TABLE bench.wrong (i int PRIMARY KEY, t text NOT NULL);
CREATE TEMP TABLE gen2 AS
SELECT i, authctx._token_new('session') AS a, authctx._token_new('session') AS b
  FROM generate_series(1, :ndecoy) i;
INSERT INTO bench.wrong SELECT i, a::text FROM gen2;
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, last_seen_at, expires_at)
SELECT authctx._token_id(a),
       bench.user_uuid(1 + (i - 1) % :nusers),
       bench.tenant_uuid(1 + (i - 1) % :ntenants),
       gen_random_uuid(), authctx._token_verifier(b),
       now() - random() * make_interval(secs => :seen_window),
       date_trunc('second', now()) + interval '1 day'
  FROM gen2;

-- revocation pool: sessions revoked in order 1, 2, 3... by bench.revoke_next()
CREATE TABLE bench.pool (i int PRIMARY KEY, t text NOT NULL, session_id uuid NOT NULL);
CREATE TEMP TABLE gen3 AS
SELECT i, authctx._token_new('session') AS tok FROM generate_series(1, :npool) i;
INSERT INTO bench.pool SELECT i, tok::text, authctx._token_id(tok) FROM gen3;
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, last_seen_at, expires_at)
SELECT authctx._token_id(tok),
       bench.user_uuid(1 + (i - 1) % :nusers),
       bench.tenant_uuid(1 + (i - 1) % :ntenants),
       gen_random_uuid(), authctx._token_verifier(tok),
       now() - random() * make_interval(secs => :seen_window),
       date_trunc('second', now()) + interval '1 day'
  FROM gen3;

-- Evidence for the stale-accept check.  revoke_log: when the revoker saw its
-- revocation committed (it writes this row after the revoking transaction's
-- COMMIT returned).  accept_log: a probe that authenticated a pool token at
-- or below the revocation frontier, with the time it started.  A stale accept
-- is an accept_log row whose start is after its token's revoke_log row.
CREATE SEQUENCE bench.revoke_seq;
CREATE UNLOGGED TABLE bench.revoke_log (run text, i int PRIMARY KEY, done_at timestamptz NOT NULL);
CREATE UNLOGGED TABLE bench.accept_log (run text, i int NOT NULL, t0 timestamptz NOT NULL);

-- The revoker: next pool session, through the contract's revoke function
-- when it exists.
SELECT :'revoke' = 'function' AS revoke_fn \gset
\if :revoke_fn
CREATE FUNCTION bench.revoke_next() RETURNS int
LANGUAGE plpgsql AS $f$
DECLARE
  n int := nextval('bench.revoke_seq');
BEGIN
  PERFORM authctx.revoke_session(p.session_id) FROM bench.pool p WHERE p.i = n;
  RETURN n;
END
$f$;
\else
CREATE FUNCTION bench.revoke_next() RETURNS int
LANGUAGE plpgsql AS $f$
DECLARE
  n int := nextval('bench.revoke_seq');
BEGIN
  UPDATE authctx.sessions s SET revoked_at = clock_timestamp()
    FROM bench.pool p
   WHERE p.i = n AND s.id = p.session_id AND s.revoked_at IS NULL;
  RETURN n;
END
$f$;
\endif
-- The revoker's load without revocations: the same round trips and log
-- write, no session touched (separates the cost of revoking from the cost of
-- a second client running at that rate on a 2-CPU machine).
CREATE SEQUENCE bench.noop_seq;
CREATE UNLOGGED TABLE bench.noop_log (run text, i int PRIMARY KEY, done_at timestamptz NOT NULL);
CREATE FUNCTION bench.revoke_noop() RETURNS int
LANGUAGE plpgsql AS $f$
DECLARE
  n int := nextval('bench.noop_seq');
BEGIN
  PERFORM p.session_id FROM bench.pool p WHERE p.i = n;
  RETURN n;
END
$f$;

-- Pool token 1 is revoked here, so the frontier starts at a real revocation.
SELECT bench.revoke_next();
INSERT INTO bench.revoke_log VALUES ('load', 1, clock_timestamp());

-- A rejection must not end the pgbench client: wrap auth_begin.  (The
-- wrapper's subtransaction costs the same for every variant that uses it.)
-- Fill the shared session cache with every live session, decoy and pool
-- session of this database (run as bench_app_noseen, so no last-seen note
-- is written).  Returns "accepted/presented".
CREATE FUNCTION bench.warm_cache() RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
  n bigint := 0;
  ok bigint := 0;
  tok text;
BEGIN
  FOR tok IN SELECT t FROM bench.tokens UNION ALL SELECT t FROM bench.pool
             UNION ALL SELECT t FROM bench.wrong LOOP
    IF bench.try_auth(tok) THEN
      ok := ok + 1;
    END IF;
    n := n + 1;
  END LOOP;
  RETURN ok || '/' || n;
END
$f$;

CREATE FUNCTION bench.try_auth(tok text) RETURNS boolean
LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM auth_begin(tok);
  RETURN true;
EXCEPTION WHEN invalid_authorization_specification THEN
  RETURN false;
END
$f$;

-- The authenticating side of the revocation test.  With probe = false it
-- presents live token r (never revoked).  With probe = true it presents the
-- pool token at distance k from the revocation frontier: below it the
-- revocation has at least started, above it the token is still live.
-- Accepting a token below the frontier is recorded with the start time.
CREATE FUNCTION bench.auth_probe(r int, k int, probe boolean) RETURNS boolean
LANGUAGE plpgsql AS $f$
DECLARE
  frontier bigint;
  n int;
  tok text;
  t0 timestamptz;
  ok boolean;
BEGIN
  IF probe THEN
    SELECT last_value INTO frontier FROM bench.revoke_seq;
    n := greatest(1, frontier + k);
    SELECT p.t INTO tok FROM bench.pool p WHERE p.i = n;
  ELSE
    SELECT b.t INTO tok FROM bench.tokens b WHERE b.i = r;
  END IF;
  t0 := clock_timestamp();
  BEGIN
    PERFORM auth_begin(tok);
    ok := true;
  EXCEPTION WHEN invalid_authorization_specification THEN
    ok := false;
  END;
  IF ok AND probe AND n <= frontier THEN
    INSERT INTO bench.accept_log VALUES (current_setting('bench.run', true), n, t0);
  END IF;
  RETURN ok;
END
$f$;

-- Server-side cost per call, without the client: run one variant's
-- statement `calls` times in a loop, inside one transaction, with keys drawn
-- uniformly from 1..ntok, and return microseconds per call.  No round trip,
-- no pgbench, no BEGIN/COMMIT: what is left is the statement itself.
CREATE FUNCTION bench.percall(variant text, ntok int, calls int) RETURNS float8
LANGUAGE plpgsql AS $f$
DECLARE
  t0 timestamptz := clock_timestamp();
  k int;
BEGIN
  FOR n IN 1..calls LOOP
    k := 1 + floor(random() * ntok)::int;
    CASE variant
    WHEN 'fetch' THEN
      PERFORM b.t FROM bench.tokens b WHERE b.i = k;
    WHEN 'floor' THEN
      PERFORM set_config('app.user_id', b.user_id::text, true),
              set_config('app.tenant_id', b.tenant_id::text, true),
              set_config('app.role', b.role, true),
              set_config('app.session_id', b.session_id::text, true),
              set_config('app.auth_method', 'session', true),
              set_config('app.expires_at', b.expires_at::text, true),
              set_config('app.scopes', '', true)
         FROM bench.tokens b WHERE b.i = k;
    WHEN 'handwritten', 'handwritten_seen' THEN
      PERFORM set_config('app.user_id', s.user_id::text, true),
              set_config('app.tenant_id', s.tenant_id::text, true),
              set_config('app.role', m.role, true),
              set_config('app.session_id', s.id::text, true)
         FROM bench.tokens b
         JOIN public.hw_sessions s ON s.token_hash = sha256(convert_to(b.t, 'UTF8'))
         JOIN public.hw_users u ON u.id = s.user_id
         JOIN public.hw_memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
        WHERE b.i = k AND s.revoked_at IS NULL AND u.disabled_at IS NULL
          AND s.expires_at > clock_timestamp();
      -- the per-request last-seen write of bench/handwritten_seen.req
      IF variant = 'handwritten_seen' THEN
        UPDATE public.hw_sessions SET last_seen_at = now()
         WHERE id = current_setting('app.session_id')::uuid
           AND last_seen_at < now() - interval '1 minute';
      END IF;
    WHEN 'json_claims' THEN
      PERFORM set_config('request.jwt.claims', b.claims, true) FROM bench.tokens b WHERE b.i = k;
    WHEN 'auth' THEN
      PERFORM auth_begin(b.t) FROM bench.tokens b WHERE b.i = k;
    WHEN 'reject_unknown' THEN
      BEGIN
        PERFORM auth_begin(b.t) FROM bench.unknown b WHERE b.i = k;
      EXCEPTION WHEN invalid_authorization_specification THEN NULL;
      END;
    WHEN 'reject_wrong' THEN
      BEGIN
        PERFORM auth_begin(b.t) FROM bench.wrong b WHERE b.i = k;
      EXCEPTION WHEN invalid_authorization_specification THEN NULL;
      END;
    END CASE;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / calls;
END
$f$;

-- RLS tables: 100 tenants x 2,000 rows, 20 rows per (tenant, bucket) -------
\if :items
CREATE TABLE public.items_rls (
  id        bigint PRIMARY KEY,
  tenant_id uuid NOT NULL,
  bucket    int NOT NULL,
  amount    int NOT NULL,
  note      text NOT NULL
);
CREATE TABLE public.items_plain (LIKE public.items_rls INCLUDING ALL);
INSERT INTO public.items_rls
SELECT n, bench.tenant_uuid(1 + (n - 1) % :ntenants), ((n - 1) / :ntenants) % 100,
       (n * 7919) % 1000, 'item ' || n
  FROM generate_series(1, :ntenants * 2000) n;
INSERT INTO public.items_plain SELECT * FROM public.items_rls;
CREATE INDEX items_rls_tenant_bucket_idx ON public.items_rls (tenant_id, bucket);
CREATE INDEX items_plain_tenant_bucket_idx ON public.items_plain (tenant_id, bucket);
SELECT authctx.enable_tenant_isolation('public.items_rls');
-- For comparison only: the same policy with the accessor in a sub-select,
-- which the planner runs once per query (an InitPlan) instead of per row.
CREATE TABLE public.items_rls_sub (LIKE public.items_plain INCLUDING ALL);
INSERT INTO public.items_rls_sub SELECT * FROM public.items_plain;
ALTER TABLE public.items_rls_sub ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.items_rls_sub FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_subselect ON public.items_rls_sub
  USING (tenant_id = (SELECT authctx.tenant_id()))
  WITH CHECK (tenant_id = (SELECT authctx.tenant_id()));

-- Skewed tenants (variants skew_*): 200,000 rows, tenant 1 owns 198,020
-- (99%), tenants 2..100 own 20 each.  The query counts and sums the
-- current tenant's rows.  Under the policy the tenant is an InitPlan, unknown
-- at plan time, so one plan serves the 20-row tenant and the 198,020-row
-- one; with a literal in the WHERE the planner sees which tenant it is.
--   skew_rls    isolated with enable_tenant_isolation (which adds an index
--               on tenant_id)
--   skew_plain  the same rows, no RLS, index on tenant_id: the query names
--               the tenant as a literal
--   skew_part   LIST-partitioned: the big tenant in its own partition, the
--               others in the default one; isolated on the parent (each
--               partition gets its tenant_id index); run-time pruning picks
--               the partition from the InitPlan's value
--   skew_ios    like skew_rls with a covering index (tenant_id) INCLUDE
--               (amount): an index-only scan for any tenant
CREATE TABLE public.skew_plain (
  id        bigint NOT NULL,
  tenant_id uuid NOT NULL,
  amount    int NOT NULL,
  note      text NOT NULL
);
INSERT INTO public.skew_plain
SELECT n, CASE WHEN n <= 1980 THEN bench.tenant_uuid(2 + (n - 1) % 99) ELSE bench.tenant_uuid(1) END,
       (n * 7919) % 1000, 'item ' || n
  FROM generate_series(1, 200000) n;
ALTER TABLE public.skew_plain ADD PRIMARY KEY (id);
CREATE INDEX skew_plain_tenant_idx ON public.skew_plain (tenant_id);
CREATE TABLE public.skew_rls (LIKE public.skew_plain INCLUDING ALL);
INSERT INTO public.skew_rls SELECT * FROM public.skew_plain;
SELECT authctx.enable_tenant_isolation('public.skew_rls');
CREATE TABLE public.skew_ios (LIKE public.skew_plain INCLUDING DEFAULTS);
INSERT INTO public.skew_ios SELECT * FROM public.skew_plain;
ALTER TABLE public.skew_ios ADD PRIMARY KEY (id);
CREATE INDEX skew_ios_tenant_amount_idx ON public.skew_ios (tenant_id) INCLUDE (amount);
SELECT authctx.enable_tenant_isolation('public.skew_ios');
CREATE TABLE public.skew_part (
  id        bigint NOT NULL,
  tenant_id uuid NOT NULL,
  amount    int NOT NULL,
  note      text NOT NULL,
  PRIMARY KEY (tenant_id, id)
) PARTITION BY LIST (tenant_id);
CREATE TABLE public.skew_part_big PARTITION OF public.skew_part
  FOR VALUES IN ('00000000-0000-4000-8000-000000000001');
CREATE TABLE public.skew_part_rest PARTITION OF public.skew_part DEFAULT;
INSERT INTO public.skew_part SELECT * FROM public.skew_plain;
SELECT authctx.enable_tenant_isolation('public.skew_part');
\endif

-- The application role: no superuser, no BYPASSRLS, member of authctx_app.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
    CREATE ROLE bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END
$$;
GRANT authctx_app TO bench_app;
-- For a diagnostic variant: the same application role with last-seen
-- tracking effectively off (no idle timeout, and a use noted only when the
-- recorded time is a day old).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app_noseen') THEN
    CREATE ROLE bench_app_noseen LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE bench_app;
    -- with the idle timeout on, a session's use is recorded every tenth of
    -- it whatever last_seen_interval says: turn the idle timeout off too
    ALTER ROLE bench_app_noseen SET authctx.session_idle_timeout = 0;
    ALTER ROLE bench_app_noseen SET authctx.last_seen_interval = 86400;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA bench TO bench_app;
GRANT SELECT ON ALL TABLES IN SCHEMA bench TO bench_app;
GRANT SELECT ON bench.revoke_seq TO bench_app;
GRANT INSERT ON bench.accept_log TO bench_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_app;
GRANT UPDATE (last_seen_at) ON public.hw_sessions TO bench_app;
REVOKE ALL ON FUNCTION bench.revoke_next() FROM PUBLIC;

VACUUM (FREEZE, ANALYZE);
