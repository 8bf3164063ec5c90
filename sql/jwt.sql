-- jwt: auth_begin with JWT access tokens of registered issuers (issue 13).
--
-- The tokens come from test/fixtures/jwt/live.sql, signed at authoring time
-- by PyJWT (test/fixtures/jwt/gen.py) and valid by the wall clock until
-- 2100 (auth_begin judges by the wall clock); their key sets from
-- fixtures.sql.  Every refusal is the one generic 28000 (42501 for a
-- tenant), and no message, detail, hint or context shows a piece of a
-- token (LEAK would be appended).  authctx._jwt_reason (superuser) says why
-- each bad token is refused, so each fails for the reason it claims.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
RESET client_min_messages;
\pset null '(null)'
\set ECHO none
\i test/fixtures/jwt/fixtures.sql
\i test/fixtures/jwt/live.sql
\set ECHO all
GRANT SELECT ON jwt_live TO PUBLIC;

CREATE TABLE public.jwt_secret_piece AS
  SELECT DISTINCT left(s, 12) AS piece
    FROM (SELECT split_part(token, '.', i) AS s FROM jwt_live, generate_series(1, 3) i) x
   WHERE length(s) >= 12;
GRANT SELECT ON public.jwt_secret_piece TO PUBLIC;
-- jwt_try(stmt): 'ok', or SQLSTATE: message (detail) [hint], LEAK appended
-- when any of them (or the context) shows a piece of a token
CREATE FUNCTION public.jwt_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text; det text; hint text; ctx text; shown text;
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
                          ctx = PG_EXCEPTION_CONTEXT;
  shown := concat_ws(' ', msg, det, hint, replace(ctx, stmt, ''));
  RETURN st || ': ' || msg || coalesce(' (' || nullif(det, '') || ')', '')
         || CASE WHEN EXISTS (SELECT 1 FROM public.jwt_secret_piece p
                               WHERE strpos(shown, p.piece) > 0)
                 THEN ' LEAK' ELSE '' END;
END
$$;
GRANT EXECUTE ON FUNCTION public.jwt_try(text) TO PUBLIC;
-- the leak detector works
SELECT public.jwt_try(format($q$DO $x$ BEGIN RAISE EXCEPTION '%%', %L; END $x$$q$,
                             (SELECT token FROM jwt_live WHERE name = 'ed_ok'))) LIKE '%LEAK' AS detector;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jwt_app') THEN
    CREATE ROLE jwt_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO jwt_app;

-- ---------------------------------------------------------------------------
-- Setup: issuers (the registry refuses weak or broken keys: 22023), users
-- linked to their subjects, tenants
-- ---------------------------------------------------------------------------
SELECT public.jwt_try(format('SELECT authctx.add_issuer(%L, %L, %L)', 'https://weak.example',
         'weak', (SELECT jwks FROM jwt_key_set WHERE name = 'rsa_1024'))) AS rsa_1024;
SELECT public.jwt_try(format('SELECT authctx.add_issuer(%L, %L, %L)', 'https://weak.example',
         'weak', (SELECT jwks FROM jwt_key_set WHERE name = 'p256_off_curve'))) AS p256_off_curve;
-- a JWK member with a byte from 0x80 up: libsodium alone decoded "é" as
-- "__" (so "AQé" as the exponent 69631); the strict decoder refuses it
SELECT public.jwt_try(format('SELECT authctx.add_issuer(%L, %L, %L)', 'https://weak.example', 'weak',
         jsonb_build_object('keys', jsonb_build_array(
           (SELECT k FROM jwt_key_set, jsonb_array_elements(jwks -> 'keys') k
             WHERE name = 'keycloak' AND k ->> 'kid' = 'rsa-2048') || '{"e": "AQé"}')))) AS non_ascii_base64url;
SET client_min_messages = warning;
SELECT authctx.add_issuer('https://live.ed.example.com/', 'api://live',
         (SELECT jwks FROM jwt_key_set WHERE name = 'ed'), 'org');
SELECT authctx.add_issuer('https://live.es.example.com', 'live-api',
         (SELECT jwks FROM jwt_key_set WHERE name = 'es'));
SELECT authctx.add_issuer('https://live.sso.example.org/realms/acme', 'authctx',
         (SELECT jwks FROM jwt_key_set WHERE name = 'keycloak'), 'tenant');
SELECT authctx.add_issuer('https://live.login.example.net/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0',
         'api://9a1e-authctx', (SELECT jwks FROM jwt_key_set WHERE name = 'entra'));
RESET client_min_messages;
SELECT authctx.create_tenant('jwt-acme') AS acme \gset
SELECT authctx.create_tenant('jwt-globex') AS globex \gset
SELECT authctx.create_user('jwt-alice@example.com') AS alice \gset
SELECT authctx.create_user('jwt-bob@example.com') AS bob \gset
SELECT authctx.add_member('jwt-acme', :'alice', 'editor');
SELECT authctx.add_member('jwt-acme', :'bob'), authctx.add_member('jwt-globex', :'bob', 'owner');
SELECT authctx.link_identity(:'alice', 'https://live.ed.example.com/', 'live-ed'),
       authctx.link_identity(:'alice', 'https://live.sso.example.org/realms/acme', 'f:8a3e:alice'),
       authctx.link_identity(:'bob', 'https://live.es.example.com', 'live-es'),
       authctx.link_identity(:'bob', 'https://live.login.example.net/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0',
                             'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ');

CREATE TABLE public.jwt_who (id uuid, name text);
INSERT INTO public.jwt_who VALUES (:'alice', 'alice'), (:'bob', 'bob');
GRANT SELECT ON public.jwt_who TO PUBLIC;
-- one auth_begin and what the accessors say
CREATE FUNCTION public.jwt_show(tok_name text, want text DEFAULT NULL) RETURNS TABLE (
  name text, who text, tenant text, role text, session_id uuid, method text, exp_2100 boolean,
  amr text[], scopes text, sub text)
LANGUAGE plpgsql AS $$
DECLARE
  c authctx.context;
  tok text := (SELECT l.token FROM jwt_live l WHERE l.name = tok_name);
BEGIN
  IF want IS NULL THEN
    c := auth_begin(tok);
  ELSE
    c := auth_begin(tok, want);
  END IF;
  RETURN QUERY SELECT tok_name, (SELECT w.name FROM public.jwt_who w WHERE w.id = authctx.user_id()),
    (SELECT t.slug FROM authctx.my_tenants() t WHERE t.tenant_id = authctx.tenant_id()),
    authctx.role(), authctx.session_id(), c.auth_method,
    c.expires_at = '2100-01-01 00:00:00+00' AND c.session_id IS NULL AND authctx.current() IS NOT DISTINCT FROM c,
    authctx.amr(),
    concat_ws(',', CASE WHEN authctx.has_scope('notes:read') THEN 'notes:read' END,
                   CASE WHEN authctx.has_scope('notes.write') THEN 'notes.write' END,
                   CASE WHEN authctx.has_scope('Notes.Read') THEN 'Notes.Read' END,
                   CASE WHEN authctx.has_scope('email') THEN 'email' END,
                   CASE WHEN authctx.has_scope('admin') THEN 'admin' END,
                   CASE WHEN authctx.has_scope('read') THEN 'read' END),
    authctx.claims() ->> 'sub';
END
$$;
GRANT EXECUTE ON FUNCTION public.jwt_show(text, text) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Good tokens, all three algorithms, as the application role.  Context:
-- auth_method jwt, no session id, expiry = exp, amr and scopes from the
-- token (scope string, scp array, scp string), the tenant from the tenant
-- claim (ed_ok: org, rs*: tenant), else the user's only membership.
-- ---------------------------------------------------------------------------
SET ROLE jwt_app;
SELECT * FROM public.jwt_show('ed_ok');
SELECT * FROM public.jwt_show('ed_no_org');
SELECT * FROM public.jwt_show('es_ok');
SELECT * FROM public.jwt_show('rs2048_ok');
SELECT * FROM public.jwt_show('rs4096_ok');
SELECT * FROM public.jwt_show('entra_ok');
SELECT * FROM public.jwt_show('es_high_s');
-- bob has two memberships: no tenant unless named; named, his role there
SELECT * FROM public.jwt_show('es_ok', 'jwt-globex');
SELECT * FROM public.jwt_show('es_ok', :'acme');
-- the claims, whole, as jsonb; gone after the transaction
BEGIN;
SELECT (auth_begin((SELECT token FROM jwt_live WHERE name = 'rs2048_ok'))).auth_method;
SELECT authctx.claims() -> 'realm_access' AS realm_access, authctx.claims() ->> 'azp' AS azp,
       jsonb_typeof(authctx.claims()) AS claims_type;
COMMIT;
SELECT authctx.claims() AS claims_after_commit, authctx.amr() AS amr_after_commit;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Bad input: each refused with the one 28000, nothing leaked; the reason
-- (superuser only) shows that each fails for what it claims to test
-- ---------------------------------------------------------------------------
SELECT l.name, authctx._jwt_reason(l.token) AS reason FROM jwt_live l
 WHERE l.n > (SELECT n FROM jwt_live WHERE name = 'entra_ok') ORDER BY l.n;
SET ROLE jwt_app;
SELECT l.name, public.jwt_try(format('SELECT auth_begin(%L)', l.token)) AS auth_begin
  FROM jwt_live l
 WHERE l.n > (SELECT n FROM jwt_live WHERE name = 'entra_ok') AND l.name <> 'es_high_s'
    OR l.name IN ('ed_unlinked', 'ed_email_only', 'ed_scope_newline', 'ed_amr_semicolon')
 ORDER BY l.n;
-- with a tenant argument too
SELECT public.jwt_try(format('SELECT auth_begin(%L, %L)',
         (SELECT token FROM jwt_live WHERE name = 'alg_none'), 'jwt-acme')) AS alg_none_tenant;
-- a 1 MB token, and one just over 16 kB, both JWT-shaped
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         'eyJhbGciOiJFZERTQSJ9.' || repeat('A', 1024 * 1024) || '.AA')) AS one_megabyte;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         'eyJhbGciOiJFZERTQSJ9.' || repeat('A', 16384) || '.AA')) AS over_16k;
-- a tenant the user is not in: 42501, by argument or by tenant claim
SELECT public.jwt_try(format('SELECT auth_begin(%L, %L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_ok'), 'jwt-globex')) AS not_member_argument;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_other_org'))) AS not_member_claim;
SELECT public.jwt_try(format('SELECT auth_begin(%L, %L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_ok'), 'no-such-tenant')) AS no_such_tenant;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Live authorization: every change takes effect at the next auth_begin,
-- the token being still within its exp
-- ---------------------------------------------------------------------------
-- a removed membership: the tenant claim's tenant is refused
SELECT authctx.remove_member('jwt-acme', :'alice');
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_ok'))) AS membership_removed;
SELECT who, tenant FROM public.jwt_show('ed_no_org') AS no_membership_no_tenant;
RESET ROLE;
SELECT authctx.add_member('jwt-acme', :'alice', 'editor');
-- a disabled user; enabled again, tokens issued before the disable stay refused
SELECT authctx.disable_user(:'alice');
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_ok'))) AS disabled;
RESET ROLE;
SELECT authctx.enable_user(:'alice');
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_ok'))) AS enabled_again_old_token;
RESET ROLE;
-- revoke_user_sessions: tokens issued (iat) before it are refused
SELECT authctx.revoke_user_sessions(:'bob') >= 0 AS revoked;
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'es_ok'))) AS revoked_es;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'entra_ok'))) AS revoked_entra;
RESET ROLE;
-- tokens issued after the stamp work (the stamp moved back before their iat,
-- 2023-11-14), those without iat do not once a stamp exists
UPDATE authctx.users SET sessions_revoked_before = '2023-01-01 00:00:00+00'
 WHERE id IN (:'alice', :'bob');
SET ROLE jwt_app;
SELECT name, who, tenant FROM public.jwt_show('ed_ok');
SELECT name, who FROM public.jwt_show('entra_ok');
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'ed_no_iat'))) AS no_iat_with_stamp;
RESET ROLE;
UPDATE authctx.users SET sessions_revoked_before = NULL WHERE id = :'alice';
SET ROLE jwt_app;
SELECT name, who FROM public.jwt_show('ed_no_iat') AS no_iat_without_stamp;
RESET ROLE;
-- an identity that is no longer linked (used just before: with authctx
-- preloaded, its answer is in the shared cache, which the unlink must drop)
SET ROLE jwt_app;
SELECT name, who FROM public.jwt_show('rs2048_ok');
SELECT name, who FROM public.jwt_show('rs2048_ok');
RESET ROLE;
DELETE FROM authctx.oauth_identities WHERE subject = 'f:8a3e:alice';
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'rs2048_ok'))) AS unlinked;
RESET ROLE;
-- a removed issuer
SELECT authctx.remove_issuer('https://live.es.example.com');
SET ROLE jwt_app;
SELECT public.jwt_try(format('SELECT auth_begin(%L)',
         (SELECT token FROM jwt_live WHERE name = 'es_ok'))) AS issuer_removed;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Policies can ask how the user authenticated, and admin_begin keeps it
-- ---------------------------------------------------------------------------
CREATE TABLE public.jwt_notes (id int, tenant_id uuid);
SELECT authctx.enable_tenant_isolation('public.jwt_notes');
CREATE POLICY jwt_mfa_only ON public.jwt_notes AS RESTRICTIVE
  USING ('mfa' = ANY (authctx.amr()));
INSERT INTO public.jwt_notes VALUES (1, :'acme'), (2, :'globex');
GRANT SELECT ON public.jwt_notes TO jwt_app;
SET ROLE jwt_app;
BEGIN;
SELECT (auth_begin((SELECT token FROM jwt_live WHERE name = 'ed_ok'))).auth_method;
SELECT count(*) AS mfa_token_sees FROM public.jwt_notes;
ROLLBACK;
RESET ROLE;
BEGIN;
SET LOCAL client_min_messages = error;
SELECT (auth_begin((SELECT token FROM jwt_live WHERE name = 'ed_ok'))).auth_method;
SELECT authctx.admin_begin('jwt test');
SELECT (authctx.current()).user_id IS NOT NULL AS has_context, authctx.amr() AS admin_amr,
       authctx.claims() ->> 'sub' AS admin_sub, authctx.has_scope('admin') AS admin_scope,
       authctx.session_id() AS admin_session_id;
ROLLBACK;
DROP TABLE public.jwt_notes, public.jwt_who, public.jwt_secret_piece;
DROP FUNCTION public.jwt_show(text, text), public.jwt_try(text);
SELECT authctx.remove_issuer(i) FROM unnest(ARRAY['https://live.ed.example.com/',
  'https://live.sso.example.org/realms/acme',
  'https://live.login.example.net/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0']) i;
