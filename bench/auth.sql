-- auth: auth_begin(token) validates the session token (lookup, constant-
-- time verifier check, expiry, revocation, user status, membership) and
-- publishes the context; the query reads it back with authctx.tenant_id().
-- Run with ntok = all sessions (cold keys: cache misses when the cache is
-- smaller than the session count) and ntok = 1000 (hot keys: cache hits).
-- Four requests per pgbench transaction, sent in one pipeline (one round
-- trip); each request is its own transaction: BEGIN, publish the context,
-- one query reading the tenant back through the variant's accessor, COMMIT.
-- Every variant fetches its token row from bench.tokens in the same
-- statement, so that overhead is identical across variants.
-- Variables: ntok (tokens drawn uniformly from bench.tokens 1..ntok).
\set r1 random(1, :ntok)
\set r2 random(1, :ntok)
\set r3 random(1, :ntok)
\set r4 random(1, :ntok)
\startpipeline
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r1;
SELECT authctx.tenant_id();
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r2;
SELECT authctx.tenant_id();
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r3;
SELECT authctx.tenant_id();
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r4;
SELECT authctx.tenant_id();
COMMIT;
\endpipeline
