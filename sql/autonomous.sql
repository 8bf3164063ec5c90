-- Records that outlive the failing transaction: a failed login and a
-- refresh reuse leave their traces although the caller rolls back; the
-- autonomous worker's kinds; last-seen batching.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

\i test/support/try.sql

SELECT authctx.create_tenant('auto-acme') IS NOT NULL AS tenant;
SELECT authctx.create_user('auto-jack@example.com') AS jack \gset
SELECT authctx.set_password(:'jack', 'jack password 1'), authctx.add_member('auto-acme', :'jack');

-- 1. a failed login inside a transaction that is then rolled back
BEGIN;
SELECT count(*) AS failures_before FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.user_id = :'jack';
SELECT authctx.login('auto-jack@example.com', 'not the password');
ROLLBACK;
SELECT count(*) AS login_failed_events FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.user_id = :'jack';
SELECT t.failures AS counted_failures FROM authctx.login_throttle t WHERE t.user_id = :'jack';
-- also when the caller rolls back after catching the error itself
BEGIN;
SELECT public.err($$SELECT authctx.login('auto-jack@example.com', 'still not it')$$) AS caught;
ROLLBACK;
SELECT t.failures AS counted_failures FROM authctx.login_throttle t WHERE t.user_id = :'jack';
-- an unknown email leaves its event too
SELECT clock_timestamp() AS t0 \gset
BEGIN;
SELECT authctx.login('auto-nobody@example.com', 'whatever');
ROLLBACK;
SELECT count(*) AS unknown_user_events FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.detail ->> 'reason' = 'unknown_user'
   AND a.occurred_at > :'t0';

-- 2. a refresh reuse inside a transaction that is then rolled back
CREATE TEMP TABLE p AS SELECT r FROM authctx.login('auto-jack@example.com', 'jack password 1') r;
CREATE TEMP TABLE p2 AS SELECT authctx.refresh(((p.r).refresh_token)::text) AS r FROM p;
BEGIN;
SELECT authctx.refresh(((p.r).refresh_token)::text) FROM p;
ROLLBACK;
SELECT (SELECT count(*) FROM authctx.sessions s WHERE s.family_id = f.family_id AND s.revoked_at IS NULL) AS live_sessions,
       (SELECT count(*) FROM authctx.refresh_tokens r WHERE r.family_id = f.family_id AND r.revoked_at IS NULL) AS live_tokens,
       (SELECT count(*) FROM authctx.audit_log a WHERE a.event = 'refresh_reuse'
                                                    AND a.detail ->> 'family_id' = f.family_id::text) AS reuse_events
  FROM (SELECT s.family_id FROM p JOIN authctx.sessions s ON s.id = (p.r).session_id) f;
-- the newer pair of that family no longer works
SELECT public.err(format('SELECT authctx.refresh(%L)', (p2.r).refresh_token)) AS newer_pair FROM p2;

-- 3. the worker's kinds, called directly (superuser only)
BEGIN;
SELECT authctx._autonomous('audit', jsonb_build_object(
  'event', 'auto_test_event', 'user_id', :'jack', 'db_role', 'someone',
  'detail', jsonb_build_object('note', 'survives rollback'))) AS written;
ROLLBACK;
SELECT a.event, a.db_role, a.detail, a.user_id = :'jack' AS user_ok
  FROM authctx.audit_log a WHERE a.event = 'auto_test_event';
-- works in a read-only transaction: the worker writes, the caller does not
BEGIN READ ONLY;
SELECT authctx._autonomous('audit', '{"event": "auto_read_only"}') AS written_read_only;
COMMIT;
SELECT count(*) AS read_only_events FROM authctx.audit_log a WHERE a.event = 'auto_read_only';
-- a record the worker cannot apply: 55000, naming only the kind, from both
-- entry points (0.1.0 warned and returned false)
SELECT public.err($$SELECT authctx._autonomous('audit', '{"detail": {"no": "event", "secret": "s3cr3t"}}')$$) AS bad_payload;
SELECT public.err($$SELECT authctx._autonomous_call('audit', '{"detail": {"no": "event", "secret": "s3cr3t"}}')$$) AS call_bad_payload;
SELECT public.err($$SELECT authctx._autonomous('bogus', '{}')$$) AS unknown_kind;
SELECT public.err($$SELECT authctx._autonomous_call('bogus', '{}')$$) AS call_unknown_kind;
SELECT public.err($$SELECT authctx._autonomous_call('cleanup', '{}')$$) AS call_internal_kind;
SELECT public.err($$SELECT authctx._autonomous(NULL, '{}')$$) AS null_kind;
SELECT public.err($$SELECT authctx._autonomous_call('audit', NULL)$$) AS call_null_payload;
-- _autonomous_call returns what the record did
BEGIN;
SELECT authctx._autonomous_call('audit', '{"event": "auto_call_event"}') AS audit_result;
SELECT authctx._autonomous_call('login_failed', jsonb_build_object(
  'user_id', :'jack', 'reason', 'test', 'count', true, 'threshold', 1000,
  'base_delay', 1, 'max_delay', 2, 'db_role', 'someone')) - 'locked_until' AS login_failed_result;
SELECT authctx._autonomous_call('login_failed', jsonb_build_object(
  'user_id', :'jack', 'reason', 'test', 'count', true, 'threshold', 1,
  'base_delay', 60, 'max_delay', 120, 'db_role', 'someone')) ->> 'locked_until' IS NOT NULL AS login_failed_locks;
ROLLBACK;
SELECT t.failures AS counted_failures, t.locked_until > clock_timestamp() AS locked
  FROM authctx.login_throttle t WHERE t.user_id = :'jack';
DELETE FROM authctx.login_throttle t WHERE t.user_id = :'jack';
SELECT count(*) AS call_events FROM authctx.audit_log a WHERE a.event = 'auto_call_event';
-- internal: no one but the extension's owner may call them
SELECT p.proname, p.prorettype::regtype AS returns,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('authctx_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('authctx_admin', p.oid, 'EXECUTE') AS admin,
       p.prosecdef AS secdef
  FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace
   AND p.proname IN ('_autonomous', '_autonomous_call', '_autonomous_apply')
 ORDER BY p.proname;
SELECT public.err($$SELECT authctx._autonomous_apply('bogus', '{}')$$) AS apply_unknown_kind;

-- 4. seen: last_seen_at / last_used_at move forward only, in the worker
CREATE TEMP TABLE k AS SELECT authctx.create_api_key(:'jack', 'auto-acme', 'seen key') AS t;
SELECT (p.r).session_id AS sid FROM p2 p \gset
SELECT authctx._token_id(k.t) AS kid FROM k \gset
UPDATE authctx.sessions SET last_seen_at = '2030-01-01 00:00:00+00' WHERE id = :'sid';
SELECT authctx._autonomous('seen', jsonb_build_object('entries', jsonb_build_array(
  jsonb_build_object('k', 's', 'id', :'sid', 't', 1893456000000000 + 3600000000),  -- 2030-01-01 01:00 UTC
  jsonb_build_object('k', 'k', 'id', :'kid', 't', 1893456000000000 + 60000000),    -- 2030-01-01 00:01 UTC
  jsonb_build_object('k', 'k', 'id', :'kid', 't', 1893456000000000 + 120000000),   -- the later of two wins
  jsonb_build_object('k', 's', 'id', '00000000-0000-4000-8000-000000000000', 't', 0)))) AS seen_written;
SELECT s.last_seen_at AT TIME ZONE 'UTC' AS session_seen FROM authctx.sessions s WHERE s.id = :'sid';
SELECT k.last_used_at AT TIME ZONE 'UTC' AS key_used FROM authctx.api_keys k WHERE k.id = :'kid';
SELECT kl.last_used_at AT TIME ZONE 'UTC' AS listed_key_used FROM authctx.list_api_keys(:'jack') kl;
-- an older time never moves them back
SELECT authctx._autonomous('seen', jsonb_build_object('entries', jsonb_build_array(
  jsonb_build_object('k', 's', 'id', :'sid', 't', 1893456000000000),
  jsonb_build_object('k', 'k', 'id', :'kid', 't', 1893456000000000)))) AS seen_written;
SELECT s.last_seen_at AT TIME ZONE 'UTC' AS session_seen FROM authctx.sessions s WHERE s.id = :'sid';
SELECT k.last_used_at AT TIME ZONE 'UTC' AS key_used FROM authctx.api_keys k WHERE k.id = :'kid';

-- 5. auth_begin records last-used off the request path: it writes nothing
-- itself (read-only transaction), a worker it does not wait for does
-- (without preload at once; with it, the last-seen worker within a tenth of
-- authctx.last_seen_interval: 6 s)
CREATE ROLE auto_app LOGIN IN ROLE authctx_app;
UPDATE authctx.api_keys SET last_used_at = NULL WHERE id = :'kid';
SELECT k.t::text AS keytext FROM k \gset
SET ROLE auto_app;
BEGIN READ ONLY;
SELECT (auth_begin(:'keytext')).auth_method;
COMMIT;
RESET ROLE;
DO $$
BEGIN
  FOR i IN 1 .. 600 LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM authctx.api_keys k, pg_temp.k t
                       WHERE k.id = authctx._token_id(t.t) AND k.last_used_at IS NOT NULL);
    PERFORM pg_sleep(0.05);
  END LOOP;
END
$$;
SELECT k.last_used_at > clock_timestamp() - interval '1 minute' AS key_used_recently
  FROM authctx.api_keys k WHERE k.id = :'kid';
DROP ROLE auto_app;
