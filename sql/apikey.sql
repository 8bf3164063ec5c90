-- API keys: create_api_key, list_api_keys, revoke_api_key, and their errors.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql

SELECT authctx.create_tenant('key-acme') IS NOT NULL AS acme,
       authctx.create_tenant('key-globex') IS NOT NULL AS globex;
SELECT authctx.create_user('key-kim@example.com') AS kim \gset
SELECT authctx.create_user('key-lee@example.com') AS lee \gset
SELECT authctx.add_member('key-acme', :'kim'), authctx.add_member('key-globex', :'kim'),
       authctx.add_member('key-acme', :'lee');

CREATE TEMP TABLE k (name text, t authctx.token);
INSERT INTO k VALUES
  ('plain', authctx.create_api_key(:'kim', 'key-acme', 'plain')),
  ('scoped', authctx.create_api_key(:'kim', 'key-globex', 'scoped', ARRAY['read', 'write'],
                                    clock_timestamp() + interval '30 days')),
  ('to revoke', authctx.create_api_key(:'kim', 'key-acme', 'to revoke', '{admin}')),
  ('to expire', authctx.create_api_key(:'kim', 'key-acme', 'to expire', NULL,
                                       clock_timestamp() + interval '1 hour'));

-- the token: kind api_key; the row: verifier only, the given tenant and scopes
SELECT k.name, authctx._token_kind(k.t) AS kind, left(k.t::text, 4) AS prefix, length(k.t::text) AS len,
       a.verifier = authctx._token_verifier(k.t) AS verifier_ok,
       (SELECT t.slug FROM authctx.tenants t WHERE t.id = a.tenant_id) AS tenant,
       a.scopes, a.expires_at IS NOT NULL AS expires, a.last_used_at IS NULL AS never_used
  FROM k JOIN authctx.api_keys a ON a.id = authctx._token_id(k.t) ORDER BY k.name;
SELECT a.event, a.detail ->> 'name' AS name, a.detail -> 'scopes' AS scopes
  FROM authctx.audit_log a WHERE a.event = 'api_key_created' AND a.user_id = :'kim'
 ORDER BY a.id;

-- list_api_keys: live keys only, no secrets
SELECT array_agg(c.parameter_name::text ORDER BY c.ordinal_position) AS columns
  FROM information_schema.routines r
  JOIN information_schema.parameters c ON c.specific_name = r.specific_name
 WHERE r.routine_schema = 'authctx' AND r.routine_name = 'list_api_keys'
   AND c.parameter_mode = 'OUT';
SELECT l.name, (SELECT t.slug FROM authctx.tenants t WHERE t.id = l.tenant_id) AS tenant, l.scopes,
       l.key_id = authctx._token_id(k.t) AS id_ok, l.last_used_at
  FROM authctx.list_api_keys(:'kim') l JOIN k ON k.name = l.name ORDER BY l.name;
SELECT count(*) AS lee_keys FROM authctx.list_api_keys(:'lee');

-- revoke_api_key: true once, then false; no longer listed
SELECT authctx.revoke_api_key(authctx._token_id(k.t)) AS first,
       authctx.revoke_api_key(authctx._token_id(k.t)) AS second
  FROM k WHERE k.name = 'to revoke';
SELECT authctx.revoke_api_key('00000000-0000-4000-8000-000000000000') AS unknown,
       authctx.revoke_api_key(NULL) AS null_id;
SELECT count(*) AS revoke_events FROM authctx.audit_log a
 WHERE a.event = 'api_key_revoked' AND a.user_id = :'kim';
-- an expired key is not listed either
UPDATE authctx.api_keys a SET expires_at = clock_timestamp() - interval '1 second'
  FROM k WHERE k.name = 'to expire' AND a.id = authctx._token_id(k.t);
SELECT l.name FROM authctx.list_api_keys(:'kim') l ORDER BY l.name;

-- auth_begin accepts a live key (the context's session_id is the key's id)
-- and refuses a revoked one
CREATE ROLE key_app LOGIN IN ROLE authctx_app;
SELECT k.t::text AS plain_key, authctx._token_id(k.t) AS plain_id FROM k WHERE k.name = 'plain' \gset
SELECT k.t::text AS revoked_key FROM k WHERE k.name = 'to revoke' \gset
SET ROLE key_app;
BEGIN;
SELECT c.auth_method, c.session_id = :'plain_id' AS key_id_ok,
       c.user_id = :'kim' AS user_ok FROM auth_begin(:'plain_key') c;
COMMIT;
SELECT public.err(format('SELECT auth_begin(%L)', :'revoked_key')) AS revoked_key;
RESET ROLE;

-- errors
SELECT public.err(format('SELECT authctx.create_api_key(%L, NULL, %L)', :'kim', 'x')) AS null_tenant;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L)', :'kim', 'no-such-tenant', 'x')) AS unknown_tenant;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L)', :'lee', 'key-globex', 'x')) AS not_member;
SELECT public.err($$SELECT authctx.create_api_key('00000000-0000-4000-8000-000000000000', 'key-acme', 'x')$$) AS unknown_user;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, NULL)', :'kim', 'key-acme')) AS null_name;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L)', :'kim', 'key-acme', '  ')) AS blank_name;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L, %L)', :'kim', 'key-acme', 'x', '{read,NULL}')) AS null_scope;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L, %L)', :'kim', 'key-acme', 'x', '{""}')) AS empty_scope;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L, %L, %L)', :'kim', 'key-acme', 'x', '{}',
                          clock_timestamp() - interval '1 minute')) AS past_expiry;
SELECT authctx.disable_user(:'lee');
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L)', :'lee', 'key-acme', 'x')) AS disabled_user;
-- NULL scopes mean none
SELECT authctx._token_id(authctx.create_api_key(:'kim', 'key-acme', 'no scopes', NULL)) AS noscope_id \gset
SELECT a.scopes FROM authctx.api_keys a WHERE a.id = :'noscope_id';

-- privileges: managers only
SET ROLE key_app;
SELECT public.err(format('SELECT authctx.create_api_key(%L, %L, %L)', :'kim', 'key-acme', 'x')) AS app_create;
SELECT public.err(format('SELECT authctx.list_api_keys(%L)', :'kim')) AS app_list;
SELECT public.err(format('SELECT authctx.revoke_api_key(%L)', :'plain_id')) AS app_revoke;
RESET ROLE;
DROP ROLE key_app;
