-- handwritten: what teams write today without authctx: look the session
-- up by the SHA-256 of the token in their own tables, check revocation,
-- expiry, user status and membership in SQL, then set_config() four values.
-- (An unknown token gives no row and sets nothing; no error is raised.)
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
SELECT set_config('app.user_id', s.user_id::text, true),
       set_config('app.tenant_id', s.tenant_id::text, true),
       set_config('app.role', m.role, true),
       set_config('app.session_id', s.id::text, true)
  FROM bench.tokens b
  JOIN public.hw_sessions s ON s.token_hash = sha256(convert_to(b.t, 'UTF8'))
  JOIN public.hw_users u ON u.id = s.user_id
  JOIN public.hw_memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
 WHERE b.i = :r1 AND s.revoked_at IS NULL AND u.disabled_at IS NULL
   AND s.expires_at > clock_timestamp();
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', s.user_id::text, true),
       set_config('app.tenant_id', s.tenant_id::text, true),
       set_config('app.role', m.role, true),
       set_config('app.session_id', s.id::text, true)
  FROM bench.tokens b
  JOIN public.hw_sessions s ON s.token_hash = sha256(convert_to(b.t, 'UTF8'))
  JOIN public.hw_users u ON u.id = s.user_id
  JOIN public.hw_memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
 WHERE b.i = :r2 AND s.revoked_at IS NULL AND u.disabled_at IS NULL
   AND s.expires_at > clock_timestamp();
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', s.user_id::text, true),
       set_config('app.tenant_id', s.tenant_id::text, true),
       set_config('app.role', m.role, true),
       set_config('app.session_id', s.id::text, true)
  FROM bench.tokens b
  JOIN public.hw_sessions s ON s.token_hash = sha256(convert_to(b.t, 'UTF8'))
  JOIN public.hw_users u ON u.id = s.user_id
  JOIN public.hw_memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
 WHERE b.i = :r3 AND s.revoked_at IS NULL AND u.disabled_at IS NULL
   AND s.expires_at > clock_timestamp();
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
BEGIN;
SELECT set_config('app.user_id', s.user_id::text, true),
       set_config('app.tenant_id', s.tenant_id::text, true),
       set_config('app.role', m.role, true),
       set_config('app.session_id', s.id::text, true)
  FROM bench.tokens b
  JOIN public.hw_sessions s ON s.token_hash = sha256(convert_to(b.t, 'UTF8'))
  JOIN public.hw_users u ON u.id = s.user_id
  JOIN public.hw_memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
 WHERE b.i = :r4 AND s.revoked_at IS NULL AND u.disabled_at IS NULL
   AND s.expires_at > clock_timestamp();
SELECT current_setting('app.tenant_id')::uuid;
COMMIT;
\endpipeline
