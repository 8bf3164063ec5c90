-- Lifecycle guarantees (issue 18): the user's revocation stamp on the hot
-- path and in list_sessions; set_password from the user's own session;
-- logout of a session token in every state ends its login family;
-- cleanup keeps the session rows of families that can still refresh
-- (revoke_session, list_sessions and the refreshed metadata depend on
-- them); refresh refuses a family whose tenant membership is gone;
-- admin_begin does not widen an API key's scopes.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;
\set VERBOSITY terse

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lc_app') THEN
    CREATE ROLE lc_app LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lc_admin') THEN
    CREATE ROLE lc_admin LOGIN;
  END IF;
END $$;
GRANT authctx_app TO lc_app;
GRANT authctx_app TO lc_admin;
GRANT authctx_admin TO lc_admin;

SELECT authctx.create_tenant('lc-acme') AS acme \gset
SELECT authctx.create_user('lc-lina@example.com') AS lina \gset
SELECT authctx.add_member('lc-acme', :'lina');
SELECT authctx.set_password(:'lina', 'lina password 1');

-- auth_begin as the application role: 'ok' or the error
CREATE FUNCTION lc_auth(tok text) RETURNS text LANGUAGE sql
  AS $$ SELECT try(format('SELECT auth_begin(%L)', tok)) $$;
GRANT EXECUTE ON FUNCTION lc_auth(text) TO lc_app;
-- unrevoked sessions and refresh tokens of a login family
CREATE FUNCTION lc_family(p_session uuid, OUT sessions bigint, OUT tokens bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM authctx.sessions s
           WHERE s.family_id = f.family_id AND s.revoked_at IS NULL),
         (SELECT count(*) FROM authctx.refresh_tokens r
           WHERE r.family_id = f.family_id AND r.revoked_at IS NULL AND r.spent_at IS NULL)
    FROM (SELECT family_id FROM authctx.sessions WHERE id = p_session) f;
$$;

-- ---------------------------------------------------------------- the stamp
-- A session row that no revocation touched (as a revoker in REPEATABLE
-- READ leaves the rows of a login that committed after its snapshot) is
-- refused once its user's stamp is later than its issue time, in
-- auth_begin and list_sessions alike; the family the stamp spares is not.
CREATE TEMP TABLE st AS
SELECT authctx.create_session(:'lina')::text AS old_tok,
       authctx.create_session(:'lina')::text AS spared_tok;
SELECT s.family_id AS spared_family FROM st, authctx.sessions s
 WHERE s.id = authctx._token_id(st.spared_tok::authctx.token) \gset
GRANT SELECT ON st TO lc_app;
SET ROLE lc_app;
SELECT lc_auth(old_tok) AS before_stamp, lc_auth(spared_tok) AS spared_before FROM st;
RESET ROLE;
UPDATE authctx.users SET sessions_revoked_before = clock_timestamp(),
                         sessions_revoked_except = :'spared_family'
 WHERE id = :'lina';
SET ROLE lc_app;
SELECT lc_auth(old_tok) AS after_stamp, lc_auth(spared_tok) AS spared_after FROM st;
RESET ROLE;
SELECT count(*) FILTER (WHERE ls.session_id = authctx._token_id(st.old_tok::authctx.token)) AS old_listed,
       count(*) FILTER (WHERE ls.session_id = authctx._token_id(st.spared_tok::authctx.token)) AS spared_listed
  FROM st, authctx.list_sessions(:'lina') ls;
-- a session issued after the stamp is live
SELECT authctx.create_session(:'lina')::text AS new_tok \gset
SET ROLE lc_app;
SELECT lc_auth(:'new_tok') AS issued_after_stamp;
RESET ROLE;

-- --------------------------------------------- set_password, own session
-- Called inside the user's own session, set_password keeps that session's
-- login family (its refresh token too) and revokes every other one.
CREATE TEMP TABLE sp AS
SELECT (SELECT r FROM authctx.login('lc-lina@example.com', 'lina password 1') r) AS own,
       (SELECT r FROM authctx.login('lc-lina@example.com', 'lina password 1') r) AS other;
SELECT ((own).session_token)::text AS own_tok FROM sp \gset
SET ROLE lc_admin;
BEGIN;
SELECT (auth_begin(:'own_tok')).user_id = :'lina' AS authenticated;
SELECT authctx.set_password(:'lina', 'lina password 2');
COMMIT;
RESET ROLE;
GRANT SELECT ON sp TO lc_app;
SET ROLE lc_app;
SELECT lc_auth(((own).session_token)::text) AS own_session, lc_auth(((other).session_token)::text) AS other_session
  FROM sp;
RESET ROLE;
SELECT try(format('SELECT authctx.refresh(%L)', (own).refresh_token)) AS own_refresh,
       try(format('SELECT authctx.refresh(%L)', (other).refresh_token)) AS other_refresh
  FROM sp;
SELECT try($$SELECT authctx.login('lc-lina@example.com', 'lina password 1')$$) AS old_password;

-- ------------------------------------------------- logout, every state
-- The login family ends whatever state the session presented is in.
CREATE TEMP TABLE lo (state text, r authctx.login_result);
DO $$ DECLARE x text; BEGIN
  FOREACH x IN ARRAY '{live,idle,expired,refreshed_away,revoked,wrong_secret}'::text[] LOOP
    INSERT INTO lo SELECT x, r FROM authctx.login('lc-lina@example.com', 'lina password 2') r;
  END LOOP;
END $$;
SELECT count(DISTINCT (r).session_id) AS logins FROM lo;
UPDATE authctx.sessions s SET last_seen_at = clock_timestamp() - interval '3 hours'
  FROM lo WHERE lo.state = 'idle' AND s.id = (lo.r).session_id;
UPDATE authctx.sessions s SET expires_at = clock_timestamp() - interval '1 minute'
  FROM lo WHERE lo.state = 'expired' AND s.id = (lo.r).session_id;
UPDATE authctx.sessions s SET revoked_at = clock_timestamp()
  FROM lo WHERE lo.state = 'revoked' AND s.id = (lo.r).session_id;
-- refreshed away: the refresh made a new pair, the old session is revoked
CREATE TEMP TABLE lo_new AS
SELECT authctx.refresh(((lo.r).refresh_token)::text) AS r FROM lo WHERE lo.state = 'refreshed_away';
-- a token whose secret does not match the stored verifier (simulated by
-- changing the verifier): nothing is revoked, and no error
UPDATE authctx.sessions s SET verifier = set_byte(s.verifier, 0, get_byte(s.verifier, 0) # 255)
  FROM lo WHERE lo.state = 'wrong_secret' AND s.id = (lo.r).session_id;
SELECT lo.state, try(format('SELECT authctx.logout(%L)', (lo.r).session_token)) AS logout
  FROM lo ORDER BY lo.state;
SELECT lo.state, f.sessions AS unrevoked_sessions, f.tokens AS usable_tokens
  FROM lo, lc_family((lo.r).session_id) f ORDER BY lo.state;
SELECT try(format('SELECT authctx.refresh(%L)', (lo_new.r).refresh_token)) AS refresh_after_logout,
       lc_auth(((lo_new.r).session_token)::text) AS new_session_after_logout
  FROM lo_new;
-- idempotent
SELECT lo.state, try(format('SELECT authctx.logout(%L)', (lo.r).session_token)) AS again
  FROM lo WHERE lo.state IN ('live', 'refreshed_away') ORDER BY lo.state;

-- ----------------------------------------------------- cleanup and families
-- Sessions idle long past the cleanup margin, whose login can still
-- refresh: cleanup() keeps their rows, so list_sessions shows them,
-- revoke_session ends them, and a refresh keeps their metadata.
CREATE TEMP TABLE cf (label text, r authctx.login_result);
DO $$ DECLARE x text; BEGIN
  FOREACH x IN ARRAY '{revoke,refresh}'::text[] LOOP
    INSERT INTO cf SELECT x, r FROM authctx.login('lc-lina@example.com', 'lina password 2') r;
  END LOOP;
END $$;
SELECT count(DISTINCT (r).session_id) AS logins FROM cf;
UPDATE authctx.sessions s SET last_seen_at = clock_timestamp() - interval '3 hours',
                              metadata = '{"device": "phone"}'
  FROM cf WHERE s.id = (cf.r).session_id;
SELECT authctx.cleanup() >= 0 AS cleaned;
SELECT cf.label, EXISTS (SELECT 1 FROM authctx.sessions s WHERE s.id = (cf.r).session_id) AS row_kept,
       EXISTS (SELECT 1 FROM authctx.list_sessions(:'lina') ls WHERE ls.session_id = (cf.r).session_id) AS listed
  FROM cf ORDER BY cf.label;
SELECT authctx.revoke_session((cf.r).session_id) AS revoked FROM cf WHERE cf.label = 'revoke';
SELECT try(format('SELECT authctx.refresh(%L)', (cf.r).refresh_token)) AS refresh_after_revoke
  FROM cf WHERE cf.label = 'revoke';
CREATE TEMP TABLE cf_new AS
SELECT authctx.refresh(((cf.r).refresh_token)::text) AS r FROM cf WHERE cf.label = 'refresh';
SELECT s.metadata AS refreshed_metadata
  FROM cf_new JOIN authctx.sessions s ON s.id = (cf_new.r).session_id;
-- once the family cannot refresh any more, its old rows go
SELECT authctx.revoke_user_sessions(:'lina') > 0 AS revoked_all;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() - interval '2 hours' WHERE user_id = :'lina';
UPDATE authctx.refresh_tokens SET revoked_at = clock_timestamp() - interval '2 hours' WHERE user_id = :'lina';
SELECT authctx.cleanup() > 0 AS cleaned;
SELECT count(*) AS rows_left FROM cf JOIN authctx.sessions s ON s.id = (cf.r).session_id;

-- ----------------------------------------------------- membership and refresh
-- refresh refuses (28000) a family whose tenant the user left, as login
-- does; nothing is revoked, and once a member again it refreshes.
CREATE TEMP TABLE mb AS SELECT r FROM authctx.login('lc-lina@example.com', 'lina password 2', 'lc-acme') r;
SELECT authctx.remove_member('lc-acme', :'lina');
SELECT try(format('SELECT authctx.refresh(%L)', (mb.r).refresh_token)) AS removed FROM mb;
SELECT try($$SELECT authctx.login('lc-lina@example.com', 'lina password 2', 'lc-acme')$$) AS login_removed;
SELECT authctx.add_member('lc-acme', :'lina');
SELECT (authctx.refresh(((mb.r).refresh_token)::text)).session_id IS NOT NULL AS member_again FROM mb;

-- ------------------------------------------------ read-only transactions
-- Nothing can be issued nor a failure recorded: login refuses at once
-- (generic 28P01), trying no password, right or wrong.
SELECT count(*) AS failures_before FROM authctx.audit_log WHERE event = 'login_failed' \gset
BEGIN READ ONLY;
SELECT try($$SELECT authctx.login('lc-lina@example.com', 'lina password 2')$$) AS right_password;
SELECT try($$SELECT authctx.login('lc-lina@example.com', 'a guess')$$) AS wrong_password;
COMMIT;
SELECT count(*) - :failures_before AS failures_recorded FROM authctx.audit_log WHERE event = 'login_failed';

-- ------------------------------------------------ admin_begin and scopes
-- The bypass is about tenants, not scopes: after admin_begin an API key's
-- transaction still has only the key's scopes.
SELECT authctx.create_api_key(:'lina', 'lc-acme', 'reader', '{notes:read}')::text AS key_tok \gset
SELECT authctx.create_api_key(:'lina', 'lc-acme', 'none')::text AS bare_key \gset
SELECT authctx.create_session(:'lina')::text AS sess_tok \gset
SET ROLE lc_admin;
BEGIN;
SELECT (auth_begin(:'key_tok')).auth_method;
SELECT authctx.admin_begin('scope check');
SELECT authctx.admin_bypass() AS bypass, (authctx.current()).auth_method,
       authctx.has_scope('notes:read') AS own_scope, authctx.has_scope('notes:write') AS other_scope;
COMMIT;
BEGIN;
SELECT (auth_begin(:'bare_key')).auth_method;
SELECT authctx.admin_begin('scope check');
SELECT authctx.admin_bypass() AS bypass, authctx.has_scope('notes:read') AS any_scope;
COMMIT;
BEGIN;
SELECT (auth_begin(:'sess_tok')).auth_method;
SELECT authctx.admin_begin('scope check');
SELECT (authctx.current()).auth_method, authctx.has_scope('notes:write') AS session_scope;
COMMIT;
RESET ROLE;

DROP FUNCTION lc_auth(text);
DROP FUNCTION lc_family(uuid);
