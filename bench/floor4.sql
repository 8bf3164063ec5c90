-- floor4: a stricter floor for diagnosis: bare set_config() of only the
-- four values an application reads (user, tenant, role, session), as the
-- hand-written variant publishes, instead of all seven that auth_begin
-- publishes (it also carries method, expiry and scopes).  No validation.
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
SELECT set_config('app.user_id', b.user_id::text, true),
       set_config('app.tenant_id', b.tenant_id::text, true),
       set_config('app.role', b.role, true),
       set_config('app.session_id', b.session_id::text, true)
  FROM bench.tokens b WHERE b.i = :r1;
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', b.user_id::text, true),
       set_config('app.tenant_id', b.tenant_id::text, true),
       set_config('app.role', b.role, true),
       set_config('app.session_id', b.session_id::text, true)
  FROM bench.tokens b WHERE b.i = :r2;
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', b.user_id::text, true),
       set_config('app.tenant_id', b.tenant_id::text, true),
       set_config('app.role', b.role, true),
       set_config('app.session_id', b.session_id::text, true)
  FROM bench.tokens b WHERE b.i = :r3;
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', b.user_id::text, true),
       set_config('app.tenant_id', b.tenant_id::text, true),
       set_config('app.role', b.role, true),
       set_config('app.session_id', b.session_id::text, true)
  FROM bench.tokens b WHERE b.i = :r4;
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
\endpipeline
