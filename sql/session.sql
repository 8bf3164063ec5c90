-- Sessions: login, logout, create_session, revoke_session,
-- revoke_user_sessions, list_sessions; every failure's SQLSTATE; one
-- message for every login failure.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql

SELECT authctx.create_tenant('sess-acme') IS NOT NULL AS acme,
       authctx.create_tenant('sess-globex') IS NOT NULL AS globex,
       authctx.create_tenant('sess-initech') IS NOT NULL AS initech;
CREATE TEMP TABLE u AS
SELECT authctx.create_user('sess-alice@example.com') AS alice,
       authctx.create_user('sess-bob@example.com') AS bob,
       authctx.create_user('sess-carol@example.com') AS carol,
       authctx.create_user('sess-dave@example.com') AS dave;
SELECT authctx.set_password(alice, 'alice password 1'),
       authctx.set_password(bob, 'bob password 1'),
       authctx.set_password(carol, 'carol password 1'),
       authctx.set_password(dave, 'dave password 1'),
       authctx.add_member('sess-acme', alice, 'owner'),
       authctx.add_member('sess-acme', bob),
       authctx.add_member('sess-globex', bob),
       authctx.add_member('sess-acme', dave)
  FROM u;
SELECT authctx.disable_user(dave) FROM u;

-- login: default tenant is the only membership; several -> no tenant
CREATE TEMP TABLE l AS
SELECT 'alice' AS who, r.* FROM authctx.login('sess-alice@example.com', 'alice password 1') r;
INSERT INTO l SELECT 'alice-upper', r.* FROM authctx.login('SESS-Alice@Example.COM', 'alice password 1') r;
INSERT INTO l SELECT 'bob', r.* FROM authctx.login('sess-bob@example.com', 'bob password 1') r;
INSERT INTO l SELECT 'bob-globex', r.* FROM authctx.login('sess-bob@example.com', 'bob password 1', 'sess-globex') r;
INSERT INTO l SELECT 'carol', r.* FROM authctx.login('sess-carol@example.com', 'carol password 1') r;
SELECT l.who,
       authctx._token_kind(l.session_token) AS session_kind,
       authctx._token_kind(l.refresh_token) AS refresh_kind,
       left(l.session_token::text, 4) AS session_prefix,
       left(l.refresh_token::text, 4) AS refresh_prefix,
       length(l.session_token::text) AS len,
       authctx._token_id(l.session_token) = l.session_id AS id_matches,
       (SELECT t.slug FROM authctx.tenants t WHERE t.id = l.tenant_id) AS tenant,
       l.expires_at > clock_timestamp() + interval '23 hours'
         AND l.expires_at <= clock_timestamp() + interval '1 day' AS expires_in_a_day
  FROM l ORDER BY l.who;

-- the session row: verifier only, wall-clock times, a fresh family
SELECT l.who, s.verifier = authctx._token_verifier(l.session_token) AS verifier_ok,
       length(s.verifier) AS verifier_len,
       s.revoked_at IS NULL AS live,
       (SELECT count(*) FROM authctx.refresh_tokens r
         WHERE r.family_id = s.family_id AND r.session_id = s.id) AS refresh_tokens
  FROM l JOIN authctx.sessions s ON s.id = l.session_id ORDER BY l.who;
SELECT count(DISTINCT s.family_id) AS families FROM l JOIN authctx.sessions s ON s.id = l.session_id;

-- login audited, without secrets
SELECT a.event, a.detail ->> 'method' AS method, a.session_id = l.session_id AS session_ok,
       a.db_role = session_user AS role_ok
  FROM l JOIN authctx.audit_log a ON a.session_id = l.session_id AND a.event = 'login'
 ORDER BY l.who;

-- login failures: one SQLSTATE, one message, whatever the cause
SELECT clock_timestamp() AS t0 \gset
SELECT public.err($$SELECT authctx.login('sess-nobody@example.com', 'whatever pw 1')$$) AS unknown_email;
SELECT public.err($$SELECT authctx.login('sess-alice@example.com', 'wrong password')$$) AS wrong_password;
SELECT public.err($$SELECT authctx.login('sess-dave@example.com', 'dave password 1')$$) AS disabled_user;
SELECT public.err($$SELECT authctx.login('sess-alice@example.com', 'alice password 1', 'sess-globex')$$) AS not_member;
SELECT public.err($$SELECT authctx.login('sess-alice@example.com', 'alice password 1', 'no-such-tenant')$$) AS unknown_tenant;
SELECT public.err($$SELECT authctx.login(NULL, NULL)$$) AS nulls;
SELECT public.err($$SELECT authctx.login('sess-alice@example.com', '')$$) AS empty_password;
SELECT count(DISTINCT public.err(q)) AS distinct_messages
  FROM (VALUES ($$SELECT authctx.login('sess-nobody@example.com', 'x')$$),
               ($$SELECT authctx.login('sess-alice@example.com', 'x')$$),
               ($$SELECT authctx.login('sess-dave@example.com', 'dave password 1')$$),
               ($$SELECT authctx.login('sess-carol@example.com', 'carol password 1', 'sess-acme')$$)) v(q);
-- each failure was recorded (by the worker) with its reason
SELECT a.detail ->> 'reason' AS reason, count(*)
  FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.occurred_at > :'t0'
   AND (a.user_id IS NULL OR a.user_id IN (SELECT alice FROM u UNION ALL SELECT dave FROM u
                                           UNION ALL SELECT carol FROM u))
 GROUP BY 1 ORDER BY 1;
-- a correct login resets alice's failure streak
SELECT t.failures FROM authctx.login_throttle t, u WHERE t.user_id = u.alice;
SELECT (authctx.login('sess-alice@example.com', 'alice password 1')).session_id IS NOT NULL AS ok;
SELECT count(*) AS throttle_rows FROM authctx.login_throttle t, u WHERE t.user_id = u.alice;

-- list_sessions: live sessions, and the session of every login family that
-- can still refresh; no secrets
SELECT count(*) AS alice_sessions FROM u, authctx.list_sessions(u.alice);
SELECT array_agg(c.parameter_name::text ORDER BY c.ordinal_position) AS columns
  FROM information_schema.routines r
  JOIN information_schema.parameters c ON c.specific_name = r.specific_name
 WHERE r.routine_schema = 'authctx' AND r.routine_name = 'list_sessions'
   AND c.parameter_mode = 'OUT';
SELECT ls.tenant_id IS NOT DISTINCT FROM l.tenant_id AS tenant_ok, ls.metadata, ls.last_seen_at <= clock_timestamp() AS seen_ok,
       ls.expires_at = l.expires_at AS expires_ok
  FROM u, authctx.list_sessions(u.carol) ls JOIN l ON l.session_id = ls.session_id;

-- idle timeout: a session unused for longer than it is not live, but its
-- login can still refresh, so it is listed (and can be revoked) until its
-- refresh token is spent or revoked; a create_session session (no refresh
-- token) is not listed once idle
UPDATE authctx.sessions s SET last_seen_at = clock_timestamp() - interval '2 hours'
  FROM l WHERE s.id = l.session_id AND l.who = 'alice-upper';
SELECT count(*) AS alice_sessions_after_idle FROM u, authctx.list_sessions(u.alice);
SELECT authctx._token_id(authctx.create_session(alice)) AS idle_cs FROM u \gset
UPDATE authctx.sessions s SET last_seen_at = clock_timestamp() - interval '2 hours' WHERE s.id = :'idle_cs';
SELECT count(*) AS idle_create_session_listed FROM u, authctx.list_sessions(u.alice) ls
 WHERE ls.session_id = :'idle_cs';
SET authctx.session_idle_timeout = 0;
SELECT count(*) AS with_idle_timeout_off FROM u, authctx.list_sessions(u.alice);
RESET authctx.session_idle_timeout;
-- absolute expiry: the same (the family can still refresh)
UPDATE authctx.sessions s SET expires_at = clock_timestamp() - interval '1 second'
  FROM l WHERE s.id = l.session_id AND l.who = 'bob-globex';
SELECT count(*) AS bob_sessions FROM u, authctx.list_sessions(u.bob);

-- logout: revokes that session and its family's refresh tokens
SELECT authctx.logout(l.session_token::text) FROM l WHERE l.who = 'bob';
SELECT s.revoked_at IS NOT NULL AS session_revoked,
       (SELECT bool_and(r.revoked_at IS NOT NULL) FROM authctx.refresh_tokens r
         WHERE r.family_id = s.family_id) AS refresh_revoked
  FROM l JOIN authctx.sessions s ON s.id = l.session_id WHERE l.who = 'bob';
SELECT count(*) AS logout_events FROM l JOIN authctx.audit_log a
    ON a.session_id = l.session_id AND a.event = 'logout' WHERE l.who = 'bob';
-- logout is idempotent (RFC 7009): again, and of an expired or an idle
-- session, it returns without error, and it ends the family whatever state
-- the session is in
SELECT public.err(format('SELECT authctx.logout(%L)', l.session_token)) AS again FROM l WHERE l.who = 'bob';
SELECT public.err(format('SELECT authctx.logout(%L)', l.session_token)) AS expired FROM l WHERE l.who = 'bob-globex';
SELECT public.err(format('SELECT authctx.logout(%L)', l.session_token)) AS idle FROM l WHERE l.who = 'alice-upper';
SELECT l.who, (SELECT count(*) FROM authctx.refresh_tokens r
                WHERE r.family_id = s.family_id AND r.revoked_at IS NULL) AS unrevoked_refresh_tokens
  FROM l JOIN authctx.sessions s ON s.id = l.session_id
 WHERE l.who IN ('bob-globex', 'alice-upper') ORDER BY l.who;
-- anything but a well-formed session token: 22P02, the input never echoed
SELECT public.err(format('SELECT authctx.logout(%L)', l.refresh_token)) AS refresh_token FROM l WHERE l.who = 'alice';
SELECT public.err($$SELECT authctx.logout('axs_garbage')$$) AS malformed;
SELECT public.err($$SELECT authctx.logout(NULL)$$) AS null_token;
SELECT position(substr(l.refresh_token::text, 5, 20) IN public.err(format('SELECT authctx.logout(%L)', l.refresh_token))) = 0
       AS not_echoed
  FROM l WHERE l.who = 'alice';
-- a well-formed token with a valid checksum but an unknown id: no error
SELECT public.err(format('SELECT authctx.logout(%L)', authctx._token_new('session'))) AS unknown;

-- create_session: token of kind session, no refresh token, ttl and metadata
CREATE TEMP TABLE cs AS
SELECT authctx.create_session(alice, NULL, interval '10 minutes', '{"device": "test"}') AS tok,
       authctx.create_session(bob, 'sess-globex') AS bob_tok,
       authctx.create_session(bob) AS bob_none
  FROM u;
SELECT authctx._token_kind(cs.tok) AS kind, left(cs.tok::text, 4) AS prefix,
       s.expires_at - s.created_at AS ttl, s.metadata,
       (SELECT t.slug FROM authctx.tenants t WHERE t.id = s.tenant_id) AS tenant,
       (SELECT count(*) FROM authctx.refresh_tokens r WHERE r.family_id = s.family_id) AS refresh_tokens
  FROM cs JOIN authctx.sessions s ON s.id = authctx._token_id(cs.tok);
SELECT (SELECT t.slug FROM authctx.tenants t WHERE t.id = s.tenant_id) AS bob_tenant,
       s.expires_at - s.created_at AS default_ttl
  FROM cs JOIN authctx.sessions s ON s.id = authctx._token_id(cs.bob_tok);
SELECT s.tenant_id IS NULL AS bob_no_tenant
  FROM cs JOIN authctx.sessions s ON s.id = authctx._token_id(cs.bob_none);
SELECT count(*) AS session_created_events FROM cs, authctx.audit_log a
 WHERE a.event = 'session_created' AND a.session_id IN (authctx._token_id(cs.tok), authctx._token_id(cs.bob_tok));
-- create_session failures
SELECT public.err($$SELECT authctx.create_session('00000000-0000-4000-8000-000000000000')$$) AS unknown_user;
SELECT public.err(format('SELECT authctx.create_session(%L)', dave)) AS disabled FROM u;
SELECT public.err(format('SELECT authctx.create_session(%L, %L)', alice, 'sess-globex')) AS not_member FROM u;
SELECT public.err(format('SELECT authctx.create_session(%L, %L)', alice, 'no-such-tenant')) AS unknown_tenant FROM u;
SELECT public.err(format('SELECT authctx.create_session(%L, NULL, %L)', alice, '-1 minute')) AS negative_ttl FROM u;
SELECT public.err(format('SELECT authctx.create_session(%L, NULL, %L)', alice, '0')) AS zero_ttl FROM u;

-- revoke_session: true once, then false; revokes the family's refresh tokens
SELECT authctx.revoke_session(l.session_id) AS first, authctx.revoke_session(l.session_id) AS second
  FROM l WHERE l.who = 'carol';
SELECT (SELECT bool_and(r.revoked_at IS NOT NULL) FROM authctx.refresh_tokens r
         WHERE r.family_id = s.family_id) AS refresh_revoked
  FROM l JOIN authctx.sessions s ON s.id = l.session_id WHERE l.who = 'carol';
SELECT authctx.revoke_session('00000000-0000-4000-8000-000000000000') AS unknown;
SELECT count(*) AS carol_sessions FROM u, authctx.list_sessions(u.carol);
SELECT count(*) AS session_revoked_events FROM l JOIN authctx.audit_log a
    ON a.session_id = l.session_id AND a.event = 'session_revoked' WHERE l.who = 'carol';

-- revoke_user_sessions: counts live sessions, revokes refresh tokens too
SELECT count(*) AS alice_live FROM u, authctx.list_sessions(u.alice);
SELECT authctx.revoke_user_sessions(alice) AS revoked FROM u;
SELECT authctx.revoke_user_sessions(alice) AS revoked_again FROM u;
SELECT count(*) AS alice_live_after FROM u, authctx.list_sessions(u.alice);
SELECT count(*) FILTER (WHERE r.revoked_at IS NULL) AS alice_live_refresh
  FROM u JOIN authctx.refresh_tokens r ON r.user_id = u.alice;
SELECT a.detail FROM u JOIN authctx.audit_log a ON a.user_id = u.alice AND a.event = 'session_revoked';
SELECT authctx.revoke_user_sessions('00000000-0000-4000-8000-000000000000') AS nobody;

-- NULL arguments
SELECT count(*) AS list_null FROM authctx.list_sessions(NULL);
SELECT authctx.revoke_session(NULL) AS revoke_null;

-- privileges: login/refresh/logout for authctx_app, the rest for authctx_manager
SELECT p.proname,
       has_function_privilege('authctx_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('authctx_manager', p.oid, 'EXECUTE') AS manager,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       p.prosecdef AS secdef,
       p.proconfig AS config
  FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace
   AND p.proname IN ('login', 'refresh', 'logout', 'create_session', 'revoke_session',
                     'revoke_user_sessions', 'list_sessions', 'create_api_key',
                     'list_api_keys', 'revoke_api_key', 'cleanup', '_issue_session',
                     '_autonomous', '_autonomous_apply')
 ORDER BY p.proname;
SELECT count(*) AS uncommented FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace
   AND p.proname IN ('login', 'refresh', 'logout', 'create_session', 'revoke_session',
                     'revoke_user_sessions', 'list_sessions', 'create_api_key',
                     'list_api_keys', 'revoke_api_key', 'cleanup')
   AND obj_description(p.oid, 'pg_proc') IS NULL;
CREATE ROLE sess_app_user LOGIN IN ROLE authctx_app;
SELECT alice AS alice_id FROM u \gset
SET ROLE sess_app_user;
SELECT public.err(format('SELECT authctx.create_session(%L)', :'alice_id')) AS app_create_session;
SELECT public.err('SELECT authctx.cleanup()') AS app_cleanup;
SELECT public.err($$SELECT authctx._autonomous('audit', '{}')$$) AS app_autonomous;
SELECT public.err($$SELECT authctx.login('sess-carol@example.com', 'carol password 1')$$) AS app_login;
RESET ROLE;
DROP ROLE sess_app_user;

-- Last-seen and revocation writes are HOT updates (fillfactor 80, and
-- neither column is indexed): on freshly filled pages, updating every tenth
-- session touches no index (at least nine in ten: a page that earlier tests
-- already filled up may take one).  With the default fillfactor of 100 the
-- pages would be full and almost none of these updates could be HOT.
CREATE TABLE pg_temp.hot_ids AS
SELECT authctx._token_id(authctx.create_session(:'alice_id')) AS id
  FROM generate_series(1, 400);
BEGIN;
UPDATE authctx.sessions SET last_seen_at = clock_timestamp()
 WHERE id IN (SELECT id FROM pg_temp.hot_ids) AND get_byte(uuid_send(id), 15) % 10 = 0;
SELECT pg_stat_get_xact_tuples_updated('authctx.sessions'::regclass) > 10 AS updated_some,
       pg_stat_get_xact_tuples_hot_updated('authctx.sessions'::regclass) * 10
         >= pg_stat_get_xact_tuples_updated('authctx.sessions'::regclass) * 9 AS nine_in_ten_hot;
ROLLBACK;
