-- json_claims: the PostgREST style.  A gateway has already checked a JWT
-- (not measured here) and passes its claims as one JSON string;
-- policies read them with current_setting('request.jwt.claims')::json.
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
SELECT set_config('request.jwt.claims', b.claims, true)
  FROM bench.tokens b WHERE b.i = :r1;
SELECT (current_setting('request.jwt.claims', true)::json ->> 'tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('request.jwt.claims', b.claims, true)
  FROM bench.tokens b WHERE b.i = :r2;
SELECT (current_setting('request.jwt.claims', true)::json ->> 'tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('request.jwt.claims', b.claims, true)
  FROM bench.tokens b WHERE b.i = :r3;
SELECT (current_setting('request.jwt.claims', true)::json ->> 'tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('request.jwt.claims', b.claims, true)
  FROM bench.tokens b WHERE b.i = :r4;
SELECT (current_setting('request.jwt.claims', true)::json ->> 'tenant_id')::uuid;
COMMIT;
\endpipeline
