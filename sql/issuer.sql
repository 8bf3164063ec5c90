-- issuer: external identity providers (JWT access tokens), phase 1: the
-- issuer registry and the internal verifier authctx._jwt_verify.
--
-- The tokens and key sets come from test/fixtures/jwt/fixtures.sql, signed
-- and exported at authoring time by PyJWT (test/fixtures/jwt/gen.py); no
-- Python at run time.  The fixtures are valid at 2023-11-14 22:30:00+00
-- (:now below): iat 22:13:20, exp 23:13:20.  authctx._jwt_reason says why
-- a token is refused, so that each bad-input test fails for the reason it
-- claims to test; authctx._jwt_verify is what callers see: one 28000.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'

\set ECHO none
\i test/fixtures/jwt/fixtures.sql
\set ECHO all
\set now '''2023-11-14 22:30:00+00'''
GRANT SELECT ON jwt_key_set, jwt_token TO PUBLIC;

-- try(stmt): 'ok', or SQLSTATE: message (detail) [hint].  LEAK is appended
-- when message, detail, hint or context (less the statement) shows a piece
-- of a fixture token (any segment's first 12 characters) or of a fixture
-- key's material (x, y, n, e, d, p, q, dp, dq, qi, k: the first 12
-- characters of any such value that long).
CREATE TEMP TABLE secret_piece AS
  SELECT DISTINCT left(s, 12) AS piece
    FROM (SELECT split_part(token, '.', i) AS s
            FROM jwt_token, generate_series(1, 3) i
          UNION ALL
          SELECT m.value #>> '{}'
            FROM jwt_key_set ks,
                 jsonb_array_elements(CASE WHEN jsonb_typeof(ks.jwks -> 'keys') = 'array'
                                           THEN ks.jwks -> 'keys' ELSE '[]' END) k,
                 jsonb_each(CASE WHEN jsonb_typeof(k) = 'object' THEN k ELSE '{}' END) m
           WHERE jsonb_typeof(m.value) = 'string'
             AND m.key IN ('x', 'y', 'n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'k')) x
   WHERE length(s) >= 12;
GRANT SELECT ON secret_piece TO PUBLIC;
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
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
         || coalesce(' [' || nullif(hint, '') || ']', '')
         || CASE WHEN EXISTS (SELECT 1 FROM secret_piece p
                               WHERE strpos(shown, p.piece) > 0)
                 THEN ' LEAK' ELSE '' END;
END
$$;
-- the leak detector works
SELECT pg_temp.try(format($q$DO $x$ BEGIN RAISE EXCEPTION '%%', %L; END $x$$q$,
                          (SELECT token FROM jwt_token WHERE name = 'ed_ok'))) LIKE '%LEAK' AS detector;

-- ---------------------------------------------------------------------------
-- Registry: authctx_admin only
-- ---------------------------------------------------------------------------
CREATE ROLE issuer_test_manager IN ROLE authctx_manager;
CREATE ROLE issuer_test_admin IN ROLE authctx_admin;
SET ROLE issuer_test_manager;
SELECT pg_temp.try($$SELECT authctx.add_issuer('https://x.example', 'x', '{"keys":[]}')$$) AS add_issuer,
       pg_temp.try($$SELECT authctx.set_issuer_keys('https://x.example', '{"keys":[]}')$$) AS set_keys,
       pg_temp.try($$SELECT authctx.remove_issuer('https://x.example')$$) AS remove_issuer,
       pg_temp.try($$SELECT * FROM authctx.list_issuers()$$) AS list_issuers;
-- the internal functions are granted to no one
SELECT pg_temp.try($$SELECT authctx._jwt_verify('a.b.c')$$) AS jwt_verify,
       pg_temp.try($$SELECT authctx._jwt_reason('a.b.c')$$) AS jwt_reason,
       pg_temp.try($$SELECT * FROM authctx._issuer_parse_jwks('{}')$$) AS parse_jwks,
       pg_temp.try($$SELECT * FROM authctx.issuer_keys$$) AS keys_table;
RESET ROLE;

-- registration, as an admin (the key sets are those published at each
-- provider's jwks_uri; Keycloak's holds an encryption key: not used)
SET ROLE issuer_test_admin;
SELECT authctx.add_issuer('https://ed.example.com/', 'api://authctx',
                          (SELECT jwks FROM jwt_key_set WHERE name = 'ed'), 'org');
SELECT authctx.add_issuer('https://es.example.com', 'authctx-api',
                          (SELECT jwks FROM jwt_key_set WHERE name = 'es'));
SELECT authctx.add_issuer('https://sso.example.org/realms/acme', 'authctx',
                          (SELECT jwks FROM jwt_key_set WHERE name = 'keycloak'), 'tenant');
SELECT authctx.add_issuer('https://login.example.net/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0',
                          'api://9a1e-authctx',
                          (SELECT jwks FROM jwt_key_set WHERE name = 'entra'), 'tid', '1 minute');
SELECT authctx.add_issuer('https://single.example.com', 'one',
                          (SELECT jwks FROM jwt_key_set WHERE name = 'single'));
SELECT issuer, audience, key_ids, tenant_claim, leeway,
       created_at <= clock_timestamp() AND keys_changed_at = created_at AS dates
  FROM authctx.list_issuers();
RESET ROLE;

-- stored in parsed form: Ed25519 key, P-256 point, RSA DER SubjectPublicKeyInfo
SELECT issuer, ordinal, kid, kty, alg, octet_length(public_key) AS bytes,
       CASE kty WHEN 'RSA' THEN substr(public_key, 1, 4) END AS der_head
  FROM authctx.issuer_keys ORDER BY issuer, ordinal;

-- duplicate, unknown, bad arguments
SELECT pg_temp.try($$SELECT authctx.add_issuer('https://es.example.com', 'other',
                   (SELECT jwks FROM jwt_key_set WHERE name = 'ed'))$$) AS duplicate;
SELECT pg_temp.try($$SELECT authctx.set_issuer_keys('https://nowhere.example',
                   (SELECT jwks FROM jwt_key_set WHERE name = 'ed'))$$) AS set_unknown,
       pg_temp.try($$SELECT authctx.remove_issuer('https://nowhere.example')$$) AS remove_unknown;
SELECT a AS argument, pg_temp.try(format('SELECT authctx.add_issuer(%s)', a)) AS result
  FROM unnest(ARRAY[
    $$NULL, 'aud', '{"keys":[]}'$$,
    $$'https://n.example', 'aud', NULL$$,
    $$'https://n.example', 'aud', '{"keys":[]}', NULL, NULL$$,
    $$'', 'aud', '{"keys":[]}'$$,
    $$repeat('i', 1025), 'aud', '{"keys":[]}'$$,
    $$'https://n.example', '', '{"keys":[]}'$$,
    $$'https://n.example', 'aud', '{"keys":[]}', ''$$,
    $$'https://n.example', 'aud', '{"keys":[]}', NULL, '-1 second'$$,
    $$'https://n.example', 'aud', '{"keys":[]}', NULL, '11 minutes'$$,
    $$'https://n.example', 'aud', '{"keys":[]}', NULL, '1 day'$$]) a;

-- key sets refused at registration (22023, naming the key, never its
-- material), and what is skipped with a NOTICE
SELECT ks.name AS key_set,
       pg_temp.try(format('SELECT authctx.add_issuer(%L, %L, %L)',
                          'https://bad.example/' || ks.name, 'aud', ks.jwks)) AS result
  FROM jwt_key_set ks
 WHERE ks.name NOT IN ('ed', 'es', 'keycloak', 'entra', 'single',
                       'rotate_old', 'rotate_both', 'rotate_new')
 ORDER BY ks.name;
SELECT count(*) AS bad_issuers_stored FROM authctx.issuers WHERE issuer LIKE 'https://bad.example/%';
-- a set that mixes a usable key with one that is skipped is accepted
SELECT authctx.add_issuer('https://mixed.example', 'aud',
                          jsonb_build_object('keys', (SELECT jwks -> 'keys' FROM jwt_key_set WHERE name = 'ed')
                                                     || (SELECT jwks -> 'keys' FROM jwt_key_set WHERE name = 'only_p384')
                                                     || (SELECT jwks -> 'keys' FROM jwt_key_set WHERE name = 'key_ops_encrypt')));
SELECT key_ids FROM authctx.list_issuers() WHERE issuer = 'https://mixed.example';
SELECT authctx.remove_issuer('https://mixed.example');

-- audited, without key material
SELECT event, detail - 'leeway' AS detail, detail ->> 'leeway' AS leeway
  FROM authctx.audit_log WHERE event LIKE 'issuer%' ORDER BY id;
SELECT count(*) AS audit_rows_with_key_material
  FROM authctx.audit_log a, secret_piece p
 WHERE a.event LIKE 'issuer%' AND strpos(a.detail::text, p.piece) > 0;

-- both tables are kept by pg_dump
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) r(oid)
  JOIN pg_class c ON c.oid = r.oid
 WHERE e.extname = 'authctx' AND c.relname LIKE 'issuer%' ORDER BY 1;

-- ---------------------------------------------------------------------------
-- Verification: every fixture, its reason, and what a caller sees
-- ---------------------------------------------------------------------------
SELECT name, authctx._jwt_reason(token, :now) AS reason, note
  FROM jwt_token ORDER BY n;

-- every refused token gets the same 28000, without detail and without a
-- piece of the token or of a key (each row is one bad-input test)
SELECT name, pg_temp.try(format('SELECT authctx._jwt_verify(%L, %L)', token, :now)) AS caller_sees
  FROM jwt_token
 WHERE authctx._jwt_reason(token, :now) <> 'ok'
 ORDER BY n;

-- the accepted tokens: what phase 2 will publish
SELECT name, v ->> 'issuer' AS issuer, v ->> 'subject' AS subject,
       v ->> 'tenant' AS tenant, v -> 'scopes' AS scopes, v -> 'amr' AS amr,
       v ->> 'kid' AS kid, v ->> 'alg' AS alg
  FROM jwt_token, LATERAL authctx._jwt_verify(token, :now) v
 WHERE authctx._jwt_reason(token, :now) = 'ok'
 ORDER BY n;
SELECT name, (v ->> 'issued_at')::timestamptz AS issued_at,
       (v ->> 'expires_at')::timestamptz AS expires_at
  FROM jwt_token, LATERAL authctx._jwt_verify(token, :now) v
 WHERE name IN ('ed_ok', 'entra_ok', 'fractional_times', 'far_future')
 ORDER BY n;
-- the claims, whole (nested objects, arrays, non-ASCII and escapes kept)
SELECT jsonb_pretty(authctx._jwt_verify(token, :now) -> 'claims')
  FROM jwt_token WHERE name IN ('rs2048_ok', 'unicode_claims') ORDER BY n;

-- the wall clock, when no instant is given: far_future holds, ed_ok expired
-- in 2023
SELECT name, authctx._jwt_reason(token) AS by_the_wall_clock
  FROM jwt_token WHERE name IN ('far_future', 'ed_ok') ORDER BY n;
SELECT (authctx._jwt_verify(token) ->> 'subject') AS far_future_subject
  FROM jwt_token WHERE name = 'far_future';

-- the bounds around 16 kB and a 1 MB token: refused by length, before
-- anything is decoded
SELECT authctx._jwt_reason(repeat('a', 16384 - 4) || '.b.c') AS at_16384,
       authctx._jwt_reason(repeat('a', 16385 - 4) || '.b.c') AS at_16385,
       authctx._jwt_reason(repeat('a', 1024 * 1024 - 4) || '.b.c') AS one_megabyte;
SELECT pg_temp.try(format('SELECT authctx._jwt_verify(%L)', repeat('eyJ', 349525) || '.e.e')) AS one_megabyte;
-- NULL and empty tokens
SELECT pg_temp.try($$SELECT authctx._jwt_verify(NULL)$$) AS null_token,
       pg_temp.try($$SELECT authctx._jwt_verify('')$$) AS empty_token,
       authctx._jwt_reason('') AS empty_reason;

-- the leeway is the issuer's: with none, a token expired 10 s ago is refused
UPDATE authctx.issuers SET leeway = '0' WHERE issuer = 'https://ed.example.com/';
SELECT name, authctx._jwt_reason(token, :now) AS without_leeway
  FROM jwt_token WHERE name IN ('exp_in_leeway', 'nbf_in_leeway', 'ed_ok') ORDER BY n;
UPDATE authctx.issuers SET leeway = '30 seconds' WHERE issuer = 'https://ed.example.com/';

-- ---------------------------------------------------------------------------
-- Key-set changes are seen by the next verification, in this backend too
-- (another backend: test/specs/issuer_rotation.spec)
-- ---------------------------------------------------------------------------
SELECT authctx._jwt_reason(token, :now) AS cached FROM jwt_token WHERE name = 'ed_ok';
BEGIN;
SELECT authctx.set_issuer_keys('https://ed.example.com/',
                               (SELECT jwks FROM jwt_key_set WHERE name = 'rotate_new'));
SELECT authctx._jwt_reason(token, :now) AS own_uncommitted_change FROM jwt_token WHERE name = 'ed_ok';
ROLLBACK;
SELECT authctx._jwt_reason(token, :now) AS after_rollback FROM jwt_token WHERE name = 'ed_ok';
BEGIN;
SELECT authctx.remove_issuer('https://ed.example.com/');
SELECT authctx._jwt_reason(token, :now) AS removed_in_transaction FROM jwt_token WHERE name = 'ed_ok';
ROLLBACK;
SELECT authctx._jwt_reason(token, :now) AS after_rollback FROM jwt_token WHERE name = 'ed_ok';
-- a key set changed behind the functions' back (a superuser's UPDATE) too
UPDATE authctx.issuer_keys SET kid = 'renamed' WHERE issuer = 'https://ed.example.com/';
SELECT authctx._jwt_reason(token, :now) AS kid_renamed FROM jwt_token WHERE name = 'ed_ok';
UPDATE authctx.issuer_keys SET kid = 'ed-2024' WHERE issuer = 'https://ed.example.com/';
SELECT authctx._jwt_reason(token, :now) AS kid_restored FROM jwt_token WHERE name = 'ed_ok';
-- rotation by set_issuer_keys, audited with the old and new key ids
SET ROLE issuer_test_admin;
SELECT authctx.set_issuer_keys('https://ed.example.com/',
                               (SELECT jwks FROM jwt_key_set WHERE name = 'rotate_both'));
RESET ROLE;
SELECT authctx._jwt_reason(token, :now) AS overlap FROM jwt_token WHERE name = 'ed_ok';
SELECT issuer, key_ids, keys_changed_at > created_at AS keys_changed
  FROM authctx.list_issuers() WHERE issuer = 'https://ed.example.com/';
SELECT detail FROM authctx.audit_log WHERE event = 'issuer_keys_changed' ORDER BY id DESC LIMIT 1;

-- clean up
SELECT authctx.remove_issuer(issuer) FROM authctx.list_issuers();
SELECT count(*) AS keys_left FROM authctx.issuer_keys;
SELECT authctx._jwt_reason(token, :now) AS after_removal FROM jwt_token WHERE name = 'ed_ok';
DROP ROLE issuer_test_manager;
DROP ROLE issuer_test_admin;
