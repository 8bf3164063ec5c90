-- Refresh tokens: rotation, single use, reuse revokes the family, the
-- grace window, and every way a refresh is refused (28000).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql
-- revoked / live counts of a family, named by any session of it
CREATE FUNCTION pg_temp.family(p_session uuid)
RETURNS TABLE (sessions_live bigint, sessions_revoked bigint, tokens_live bigint, tokens_revoked bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM authctx.sessions s WHERE s.family_id = f.family_id AND s.revoked_at IS NULL),
         (SELECT count(*) FROM authctx.sessions s WHERE s.family_id = f.family_id AND s.revoked_at IS NOT NULL),
         (SELECT count(*) FROM authctx.refresh_tokens r WHERE r.family_id = f.family_id AND r.revoked_at IS NULL),
         (SELECT count(*) FROM authctx.refresh_tokens r WHERE r.family_id = f.family_id AND r.revoked_at IS NOT NULL)
    FROM (SELECT s.family_id FROM authctx.sessions s WHERE s.id = p_session) f;
$$;

SELECT authctx.create_tenant('ref-acme') IS NOT NULL AS tenant;
SELECT authctx.create_user('ref-erin@example.com') AS erin \gset
SELECT authctx.set_password(:'erin', 'erin password 1'), authctx.add_member('ref-acme', :'erin');

-- rotation: each refresh spends its token, ends its session, issues a pair
CREATE TEMP TABLE p (n int, r authctx.login_result);
INSERT INTO p SELECT 1, r FROM authctx.login('ref-erin@example.com', 'erin password 1') r;
INSERT INTO p SELECT 2, authctx.refresh(((p.r).refresh_token)::text) FROM p WHERE n = 1;
INSERT INTO p SELECT 3, authctx.refresh(((p.r).refresh_token)::text) FROM p WHERE n = 2;
SELECT n, left(((p.r).session_token)::text, 4) AS sprefix, left(((p.r).refresh_token)::text, 4) AS rprefix,
       (SELECT t.slug FROM authctx.tenants t WHERE t.id = (p.r).tenant_id) AS tenant,
       s.revoked_at IS NULL AS session_live,
       rt.spent_at IS NOT NULL AS refresh_spent,
       rt.parent_id = (SELECT authctx._token_id((q.r).refresh_token) FROM p q WHERE q.n = p.n - 1) AS parent_ok
  FROM p
  JOIN authctx.sessions s ON s.id = (p.r).session_id
  JOIN authctx.refresh_tokens rt ON rt.id = authctx._token_id((p.r).refresh_token)
 ORDER BY n;
SELECT count(DISTINCT s.family_id) AS families FROM p JOIN authctx.sessions s ON s.id = (p.r).session_id;
SELECT count(*) AS live_sessions FROM authctx.list_sessions(:'erin');
SELECT count(*) AS refresh_events FROM authctx.audit_log a
 WHERE a.event = 'refresh' AND a.user_id = :'erin';

-- presenting a spent refresh token again: 28000, and the whole family goes
SELECT public.err(format('SELECT authctx.refresh(%L)', (p.r).refresh_token)) AS reuse FROM p WHERE n = 1;
SELECT f.* FROM p, pg_temp.family((p.r).session_id) f WHERE n = 3;
SELECT a.detail ->> 'sessions_revoked' AS sessions_revoked,
       a.detail ->> 'family_id' = (SELECT s.family_id::text FROM p JOIN authctx.sessions s
                                     ON s.id = (p.r).session_id WHERE n = 1) AS family_ok,
       a.detail ? 'refresh_token_id' AS has_token_id, a.db_role = session_user AS role_ok
  FROM authctx.audit_log a WHERE a.event = 'refresh_reuse' AND a.user_id = :'erin';
-- the newest token of the family is dead too
SELECT public.err(format('SELECT authctx.refresh(%L)', (p.r).refresh_token)) AS newest_after_reuse FROM p WHERE n = 3;
SELECT count(*) AS live_sessions_after_reuse FROM authctx.list_sessions(:'erin');
SELECT count(*) AS reuse_events FROM authctx.audit_log a
 WHERE a.event = 'refresh_reuse' AND a.user_id = :'erin';

-- grace window: a second refresh of the same token shortly after succeeds
SET authctx.refresh_reuse_grace = '30s';
SHOW authctx.refresh_reuse_grace;
CREATE TEMP TABLE g (n int, r authctx.login_result);
INSERT INTO g SELECT 1, r FROM authctx.login('ref-erin@example.com', 'erin password 1') r;
INSERT INTO g SELECT 2, authctx.refresh(((g.r).refresh_token)::text) FROM g WHERE n = 1;
INSERT INTO g SELECT 3, authctx.refresh(((g.r).refresh_token)::text) FROM g WHERE n = 1;
SELECT n, (g.r).session_id IS NOT NULL AS ok FROM g ORDER BY n;
SELECT f.* FROM g, pg_temp.family((g.r).session_id) f WHERE n = 1;
SELECT count(*) AS grace_refreshes FROM authctx.audit_log a
 WHERE a.event = 'refresh' AND a.user_id = :'erin' AND (a.detail ->> 'grace')::boolean;
-- outside the window the same presentation is a reuse
UPDATE authctx.refresh_tokens rt SET spent_at = spent_at - interval '1 minute'
  FROM g WHERE g.n = 1 AND rt.id = authctx._token_id((g.r).refresh_token);
SELECT public.err(format('SELECT authctx.refresh(%L)', (g.r).refresh_token)) AS after_grace FROM g WHERE n = 1;
SELECT f.* FROM g, pg_temp.family((g.r).session_id) f WHERE n = 1;
RESET authctx.refresh_reuse_grace;
SHOW authctx.refresh_reuse_grace;

-- refused without revoking anything: 28000 each time
CREATE TEMP TABLE h AS SELECT r FROM authctx.login('ref-erin@example.com', 'erin password 1') r;
SELECT public.err(format('SELECT authctx.refresh(%L)', (h.r).session_token)) AS session_token FROM h;
SELECT public.err(format('SELECT authctx.refresh(%L)', authctx.create_api_key(:'erin', 'ref-acme', 'k'))) AS api_key;
SELECT public.err($$SELECT authctx.refresh('axr_not-a-token')$$) AS malformed;
SELECT public.err($$SELECT authctx.refresh('')$$) AS empty;
SELECT public.err($$SELECT authctx.refresh(NULL)$$) AS null_token;
SELECT public.err(format('SELECT authctx.refresh(%L)', authctx._token_new('refresh'))) AS unknown;
-- a token whose secret does not match the stored verifier (simulated by
-- changing the verifier) is refused and revokes nothing
UPDATE authctx.refresh_tokens rt SET verifier = set_byte(verifier, 0, get_byte(verifier, 0) # 255)
  FROM h WHERE rt.id = authctx._token_id((h.r).refresh_token);
SELECT public.err(format('SELECT authctx.refresh(%L)', (h.r).refresh_token)) AS wrong_secret FROM h;
UPDATE authctx.refresh_tokens rt SET verifier = authctx._token_verifier((h.r).refresh_token)
  FROM h WHERE rt.id = authctx._token_id((h.r).refresh_token);
-- expired
UPDATE authctx.refresh_tokens rt SET expires_at = clock_timestamp() - interval '1 second'
  FROM h WHERE rt.id = authctx._token_id((h.r).refresh_token);
SELECT public.err(format('SELECT authctx.refresh(%L)', (h.r).refresh_token)) AS expired FROM h;
UPDATE authctx.refresh_tokens rt SET expires_at = clock_timestamp() + interval '1 day'
  FROM h WHERE rt.id = authctx._token_id((h.r).refresh_token);
SELECT f.* FROM h, pg_temp.family((h.r).session_id) f;
-- the token is never echoed
SELECT position(substr(((h.r).session_token)::text, 5, 20)
                IN public.err(format('SELECT authctx.refresh(%L)', (h.r).session_token))) = 0 AS not_echoed
  FROM h;
-- and it still works after all that
SELECT (authctx.refresh(((h.r).refresh_token)::text)).session_id IS NOT NULL AS still_works FROM h;
-- disabling the user revokes the family for good (enable_user brings
-- nothing back); a login after the enable works
CREATE TEMP TABLE d AS SELECT r FROM authctx.login('ref-erin@example.com', 'erin password 1') r;
SELECT authctx.disable_user(:'erin');
SELECT public.err(format('SELECT authctx.refresh(%L)', (d.r).refresh_token)) AS disabled_user FROM d;
SELECT authctx.enable_user(:'erin');
SELECT public.err(format('SELECT authctx.refresh(%L)', (d.r).refresh_token)) AS enabled_again FROM d;
SELECT f.* FROM d, pg_temp.family((d.r).session_id) f;
SELECT (authctx.refresh(((authctx.login('ref-erin@example.com', 'erin password 1')).refresh_token)::text)).session_id
       IS NOT NULL AS new_login_refreshes;

-- presented twice inside one transaction: the second is refused at once
-- (no worker, no WARNING: the first spend dies with the transaction)
CREATE TEMP TABLE t2 AS SELECT r FROM authctx.login('ref-erin@example.com', 'erin password 1') r;
SELECT ((t2.r).refresh_token)::text AS twice FROM t2 \gset
BEGIN;
SELECT (authctx.refresh(:'twice')).session_id IS NOT NULL AS first_refresh;
SELECT authctx.refresh(:'twice');
ROLLBACK;
SELECT f.* FROM t2, pg_temp.family((t2.r).session_id) f;
SELECT (authctx.refresh(:'twice')).session_id IS NOT NULL AS usable_after_rollback;

-- a login without a tenant refreshes into a session without one
SELECT authctx.create_user('ref-frank@example.com') AS frank \gset
SELECT authctx.set_password(:'frank', 'frank password 1');
SELECT (r).tenant_id IS NULL AS no_tenant
  FROM (SELECT authctx.refresh(((authctx.login('ref-frank@example.com', 'frank password 1')).refresh_token)::text) AS r) x;
