-- Lockout: bounded exponential back-off per account, counted in a
-- transaction of its own, same message as every other login failure.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

-- SQLSTATE and message of a statement, or 'ok'
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- the throttle row of a user: failures and the lock's length in seconds
CREATE FUNCTION pg_temp.throttle(p_user uuid)
RETURNS TABLE (failures integer, lock_seconds numeric, locked boolean)
LANGUAGE sql AS $$
  SELECT t.failures,
         round(extract(epoch FROM t.locked_until - t.last_failure_at)),
         t.locked_until > clock_timestamp()
    FROM authctx.login_throttle t WHERE t.user_id = p_user;
$$;
-- as if time had passed until just after the current lock ran out
CREATE FUNCTION pg_temp.unlock(p_user uuid) RETURNS void LANGUAGE sql AS $$
  UPDATE authctx.login_throttle t
     SET locked_until = t.locked_until - d.shift,
         last_failure_at = t.last_failure_at - d.shift
    FROM (SELECT x.locked_until - clock_timestamp() + interval '1 second' AS shift
            FROM authctx.login_throttle x WHERE x.user_id = p_user) d
   WHERE t.user_id = p_user;
$$;

SET authctx.lockout_threshold = 3;
SET authctx.lockout_base_delay = '30s';
SET authctx.lockout_max_delay = '2min';
SELECT authctx.create_user('lock-gina@example.com') AS gina \gset
SELECT authctx.create_user('lock-hank@example.com') AS hank \gset
SELECT authctx.set_password(:'gina', 'gina password 1'), authctx.set_password(:'hank', 'hank password 1');

-- below the threshold: counted, not locked; a success clears the streak
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 1')$$) AS try1;
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 2')$$) AS try2;
SELECT * FROM pg_temp.throttle(:'gina');
SELECT (authctx.login('lock-gina@example.com', 'gina password 1')).session_id IS NOT NULL AS login_ok;
SELECT count(*) AS throttle_rows FROM pg_temp.throttle(:'gina');

-- the threshold locks the account for base_delay
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 1')$$) AS try1;
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 2')$$) AS try2;
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 3')$$) AS try3;
SELECT * FROM pg_temp.throttle(:'gina');
-- locked: the right password is refused, with the same error
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'gina password 1')$$) AS right_password_while_locked;
-- attempts during the lock are audited but do not extend it
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 4')$$) AS wrong_while_locked;
SELECT * FROM pg_temp.throttle(:'gina');
SELECT a.detail ->> 'reason' AS reason, count(*) FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.user_id = :'gina' GROUP BY 1 ORDER BY 1;
-- one message for locked, wrong and unknown
SELECT count(DISTINCT pg_temp.err(q)) AS distinct_messages
  FROM (VALUES ($$SELECT authctx.login('lock-gina@example.com', 'gina password 1')$$),
               ($$SELECT authctx.login('lock-hank@example.com', 'wrong')$$),
               ($$SELECT authctx.login('lock-nobody@example.com', 'wrong')$$)) v(q);
-- per account: hank is not affected by gina's lock
SELECT (authctx.login('lock-hank@example.com', 'hank password 1')).session_id IS NOT NULL AS other_account_ok;
-- the lock does not touch existing sessions
SELECT count(*) > 0 AS gina_sessions_live FROM authctx.list_sessions(:'gina');

-- exponential back-off, bounded by max_delay
SELECT pg_temp.unlock(:'gina');
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 5')$$) AS try;
SELECT * FROM pg_temp.throttle(:'gina');
SELECT pg_temp.unlock(:'gina');
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 6')$$) AS try;
SELECT * FROM pg_temp.throttle(:'gina');
SELECT pg_temp.unlock(:'gina');
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 7')$$) AS try;
SELECT * FROM pg_temp.throttle(:'gina');
SELECT pg_temp.unlock(:'gina');
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 8')$$) AS try;
SELECT * FROM pg_temp.throttle(:'gina');

-- once the lock has run out the right password works and clears it
SELECT pg_temp.unlock(:'gina');
SELECT (authctx.login('lock-gina@example.com', 'gina password 1')).session_id IS NOT NULL AS login_after_lock;
SELECT count(*) AS throttle_rows FROM pg_temp.throttle(:'gina');

-- a streak older than twice max_delay is forgotten
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 1')$$) AS try;
UPDATE authctx.login_throttle t SET failures = 10, last_failure_at = clock_timestamp() - interval '5 minutes'
 WHERE t.user_id = :'gina';
SELECT pg_temp.err($$SELECT authctx.login('lock-gina@example.com', 'wrong 2')$$) AS try;
SELECT * FROM pg_temp.throttle(:'gina');

-- unknown emails and disabled users are not counted (no row to count in)
SELECT authctx.disable_user(:'hank');
SELECT pg_temp.err($$SELECT authctx.login('lock-hank@example.com', 'wrong')$$) AS disabled;
SELECT count(*) AS hank_throttle_rows FROM pg_temp.throttle(:'hank');

-- the threshold of 1 locks at the first failure, for base_delay
SET authctx.lockout_threshold = 1;
SELECT authctx.create_user('lock-ivy@example.com') AS ivy \gset
SELECT authctx.set_password(:'ivy', 'ivy password 1');
SELECT pg_temp.err($$SELECT authctx.login('lock-ivy@example.com', 'wrong')$$) AS try;
SELECT * FROM pg_temp.throttle(:'ivy');
RESET authctx.lockout_threshold;
RESET authctx.lockout_base_delay;
RESET authctx.lockout_max_delay;
SHOW authctx.lockout_threshold;
SHOW authctx.lockout_base_delay;
SHOW authctx.lockout_max_delay;
