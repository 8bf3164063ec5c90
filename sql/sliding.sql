-- Sliding last-seen (issue 14, item 1): a session's last-seen time is
-- recorded only when it is a tenth of authctx.session_idle_timeout (T) old,
-- and the idle rule allows for that lag: a session is refused when its
-- recorded time is 1.1 x T old.  So a session used within T is never
-- refused, across the write boundary, and one idle for longer than 1.1 x T
-- always is.  Runs in both preload modes: preloaded, the use lives in the
-- cache entry; without, in this backend's pending note, then the table.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
LOAD 'authctx';
\i test/support/try.sql
SET client_min_messages = warning;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sl_app') THEN
    CREATE ROLE sl_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO sl_app;

SELECT authctx.create_tenant('sl-acme') AS acme \gset
SELECT authctx.create_user('sl-alice@example.com') AS alice \gset
SELECT authctx.add_member('sl-acme', :'alice');

-- 1. Only the stored time (a session not yet used since it was read: a
-- fresh backend, a restart, no cache entry).  T = 60 s, so the recording
-- interval R is 6 s: a stored time T + 2 s old is still live (its last use
-- may have been up to R later), one T + R old is not.
SET authctx.session_idle_timeout = '60s';
SELECT authctx.create_session(:'alice')::text AS s_within \gset
SELECT authctx.create_session(:'alice')::text AS s_slack \gset
SELECT authctx.create_session(:'alice')::text AS s_beyond \gset
UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '59 seconds'
 WHERE id = authctx._token_id(:'s_within');
UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '62 seconds'
 WHERE id = authctx._token_id(:'s_slack');
UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '66.5 seconds'
 WHERE id = authctx._token_id(:'s_beyond');
SET ROLE sl_app;
SELECT try(format('SELECT auth_begin(%L)', :'s_within')) AS stored_within_t,
       try(format('SELECT auth_begin(%L)', :'s_slack')) AS stored_within_t_plus_r,
       try(format('SELECT auth_begin(%L)', :'s_beyond')) AS stored_beyond_t_plus_r;
RESET ROLE;
-- list_sessions applies the same rule (authctx._session_live)
SELECT count(*) FILTER (WHERE ls.session_id = authctx._token_id(:'s_slack')) AS slack_listed,
       count(*) FILTER (WHERE ls.session_id = authctx._token_id(:'s_beyond')) AS beyond_listed
  FROM authctx.list_sessions(:'alice') ls;

-- 2. Across the write boundary, by the clock.  T = 4 s, R = 0.4 s.  Used
-- 2.5 s after it was issued (older than R: the use is recorded), then 2.5 s
-- later: used within T, so accepted, although it is 5 s past the time
-- stored at issue (T + R is 4.4 s).  Then idle for 4.5 s: refused.
SET authctx.session_idle_timeout = '4s';
SELECT authctx.create_session(:'alice')::text AS s_clock \gset
SET ROLE sl_app;
SELECT pg_sleep(2.5);
SELECT try(format('SELECT auth_begin(%L)', :'s_clock')) AS used_after_2_5s;
SELECT pg_sleep(2.5);
SELECT try(format('SELECT auth_begin(%L)', :'s_clock')) AS used_within_t_again;
SELECT pg_sleep(4.5);
SELECT try(format('SELECT auth_begin(%L)', :'s_clock')) AS idle_beyond_t_plus_r;
RESET ROLE;

-- 3. With the idle timeout off, no idle rule at all.
SET authctx.session_idle_timeout = 0;
UPDATE authctx.sessions SET last_seen_at = clock_timestamp() - interval '30 days'
 WHERE id = authctx._token_id(:'s_beyond');
SET ROLE sl_app;
SELECT try(format('SELECT auth_begin(%L)', :'s_beyond')) AS idle_timeout_off;
RESET ROLE;
RESET authctx.session_idle_timeout;
