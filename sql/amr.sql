-- amr: how the context's user authenticated (authctx.amr()) and a JWT's
-- claims (authctx.claims()).  Sessions record their login's methods
-- (sessions.amr: pwd for login, webauthn for login_webauthn, see
-- sql/webauthn.sql, empty for create_session; a refresh keeps its
-- family's), auth_begin publishes them, and they are as unforgeable as the
-- rest of the context.  JWT contexts: sql/jwt.sql.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;
\pset null '(null)'

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'amr_app') THEN
    CREATE ROLE amr_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO amr_app;
SELECT authctx.create_tenant('amr-acme') AS acme \gset
SELECT authctx.create_user('amr-alice@example.com') AS alice \gset
SELECT authctx.add_member('amr-acme', :'alice', 'member');
SELECT authctx.set_password(:'alice', 'alice password 1');
SELECT authctx.create_session(:'alice')::text AS created \gset
SELECT r.session_token::text AS pwd_tok, r.refresh_token::text AS pwd_refresh
  FROM authctx.login('amr-alice@example.com', 'alice password 1') r \gset
SELECT r.session_token::text AS pwd_tok2
  FROM authctx.login('amr-alice@example.com', 'alice password 1') r \gset
SELECT authctx.create_api_key(:'alice', 'amr-acme', 'amr-key', ARRAY['inv:read'])::text AS key \gset

-- the column: text[], last, empty by default
SELECT attname, format_type(atttypid, atttypmod), attnotnull,
       attnum = (SELECT max(attnum) FROM pg_attribute
                  WHERE attrelid = 'authctx.sessions'::regclass AND NOT attisdropped) AS last
  FROM pg_attribute WHERE attrelid = 'authctx.sessions'::regclass AND attname = 'amr';
SELECT amr FROM authctx.sessions WHERE user_id = :'alice' ORDER BY created_at;
-- signatures and volatility
SELECT p.oid::regprocedure, p.provolatile, p.proparallel, format_type(p.prorettype, NULL),
       has_function_privilege('amr_app', p.oid, 'EXECUTE') AS app_may
  FROM pg_proc p
 WHERE p.oid IN ('authctx.amr()'::regprocedure, 'authctx.claims()'::regprocedure)
 ORDER BY 1;

SET ROLE amr_app;
-- no context: NULL
SELECT authctx.amr() AS amr, authctx.claims() AS claims;
BEGIN;
SELECT (auth_begin(:'pwd_tok')).auth_method;
SELECT authctx.amr() AS amr, 'pwd' = ANY (authctx.amr()) AS pwd_login,
       authctx.claims() AS claims, authctx.session_id() IS NOT NULL AS has_session;
COMMIT;
-- gone with the transaction
SELECT authctx.amr() AS amr_after_commit;
BEGIN;
SELECT (auth_begin(:'created')).auth_method;
SELECT authctx.amr() AS create_session_amr, authctx.claims() AS claims;
-- a second auth_begin in the same transaction replaces it
SELECT (auth_begin(:'pwd_tok')).auth_method;
SELECT authctx.amr() AS replaced;
SELECT auth_end();
SELECT authctx.amr() AS after_auth_end;
ROLLBACK;
BEGIN;
SELECT (auth_begin(:'key')).auth_method;
SELECT authctx.amr() AS api_key_amr, authctx.claims() AS claims;
ROLLBACK;

-- unforgeable: the hidden parameters refuse every value but ours
BEGIN;
SELECT (auth_begin(:'created')).auth_method;
SELECT try($$SELECT set_config('authctx.credential', 'session;;pwd
webauthn;', true)$$) AS forge_amr;
SELECT try($$SELECT set_config('authctx.claims', '{"sub":"admin"}', true)$$) AS forge_claims;
SELECT try($$SET LOCAL authctx.claims = '{"sub":"admin"}'$$) AS set_claims;
SELECT try($$RESET authctx.claims$$) AS reset_claims;
SELECT authctx.amr() AS still_empty, authctx.claims() AS still_null,
       current_setting('authctx.claims') AS claims_setting;
COMMIT;
RESET ROLE;

-- a refresh keeps the login's methods
SELECT (authctx.refresh(:'pwd_refresh')).session_token::text AS refreshed \gset
SELECT s.amr FROM authctx.sessions s
 WHERE s.id = authctx._token_id(authctx._parse_token(:'refreshed', 'session'));
BEGIN;
SELECT (auth_begin(:'refreshed')).auth_method;
SELECT authctx.amr() AS refreshed_amr;
-- admin_begin keeps the amr
SELECT authctx.admin_begin('amr test');
SELECT authctx.amr() AS admin_amr;
ROLLBACK;

-- a policy can require how the user logged in
CREATE TABLE public.amr_secrets (id int, tenant_id uuid);
SELECT authctx.enable_tenant_isolation('public.amr_secrets');
CREATE POLICY amr_passkey_only ON public.amr_secrets AS RESTRICTIVE
  USING ('webauthn' = ANY (authctx.amr()));
INSERT INTO public.amr_secrets VALUES (1, :'acme');
GRANT SELECT ON public.amr_secrets TO amr_app;
SET ROLE amr_app;
BEGIN;
SELECT (auth_begin(:'pwd_tok2')).auth_method;
SELECT count(*) AS password_login_sees FROM public.amr_secrets;
ROLLBACK;
RESET ROLE;
-- the session's amr is read at every auth_begin (the cache follows changes)
UPDATE authctx.sessions SET amr = ARRAY['pwd', 'webauthn']
 WHERE id = authctx._token_id(authctx._parse_token(:'pwd_tok2', 'session'));
SET ROLE amr_app;
BEGIN;
SELECT (auth_begin(:'pwd_tok2')).auth_method;
SELECT authctx.amr() AS updated_amr, count(*) AS passkey_sees FROM public.amr_secrets;
ROLLBACK;
RESET ROLE;
-- a stored amr that breaks the scope rule (a ';' or a newline): refused
UPDATE authctx.sessions SET amr = ARRAY[E'pwd\nwebauthn']
 WHERE id = authctx._token_id(authctx._parse_token(:'pwd_tok2', 'session'));
SELECT try(format('SELECT auth_begin(%L)', :'pwd_tok2')) AS bad_amr;
DROP TABLE public.amr_secrets;
