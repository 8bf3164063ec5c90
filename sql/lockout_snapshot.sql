-- Issue 10, item 4a: the lockout decision reads the latest committed state,
-- never the caller's snapshot.  Inside one REPEATABLE READ (or
-- SERIALIZABLE) transaction, with a savepoint around each attempt, the
-- failures the worker commits must still lock the account: 12 wrong
-- passwords, then the right one is refused, and the counter stays
-- committed after the transaction is rolled back.  Each password attempt
-- is decided by the worker in a READ COMMITTED transaction of its own.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

SELECT authctx.create_user('snap-olga@example.com') AS olga \gset
SELECT authctx.create_user('snap-pete@example.com') AS pete \gset
SELECT authctx.set_password(:'olga', 'olga password 1'), authctx.set_password(:'pete', 'pete password 1');
-- the throttle row of a user, as committed
CREATE FUNCTION pg_temp.throttle(p_user uuid)
RETURNS TABLE (failures integer, locked boolean)
LANGUAGE sql AS $$
  SELECT t.failures, t.locked_until > clock_timestamp()
    FROM authctx.login_throttle t WHERE t.user_id = p_user;
$$;
-- one attempt in a savepoint, as an attacker would make it
CREATE FUNCTION pg_temp.attempt(p_email text, p_password text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM authctx.login(p_email, p_password);
  RETURN 'logged in';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- (a) REPEATABLE READ, explicit savepoints: the snapshot is taken before
-- the first attempt and never moves
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS throttle_rows_in_snapshot FROM authctx.login_throttle WHERE user_id = :'olga';
SAVEPOINT s1;  SELECT authctx.login('snap-olga@example.com', 'guess 1');  ROLLBACK TO s1;
SAVEPOINT s2;  SELECT authctx.login('snap-olga@example.com', 'guess 2');  ROLLBACK TO s2;
SAVEPOINT s3;  SELECT authctx.login('snap-olga@example.com', 'guess 3');  ROLLBACK TO s3;
SAVEPOINT s4;  SELECT authctx.login('snap-olga@example.com', 'guess 4');  ROLLBACK TO s4;
SAVEPOINT s5;  SELECT authctx.login('snap-olga@example.com', 'guess 5');  ROLLBACK TO s5;
SAVEPOINT s6;  SELECT authctx.login('snap-olga@example.com', 'guess 6');  ROLLBACK TO s6;
SAVEPOINT s7;  SELECT authctx.login('snap-olga@example.com', 'guess 7');  ROLLBACK TO s7;
SAVEPOINT s8;  SELECT authctx.login('snap-olga@example.com', 'guess 8');  ROLLBACK TO s8;
SAVEPOINT s9;  SELECT authctx.login('snap-olga@example.com', 'guess 9');  ROLLBACK TO s9;
SAVEPOINT s10; SELECT authctx.login('snap-olga@example.com', 'guess 10'); ROLLBACK TO s10;
SAVEPOINT s11; SELECT authctx.login('snap-olga@example.com', 'guess 11'); ROLLBACK TO s11;
SAVEPOINT s12; SELECT authctx.login('snap-olga@example.com', 'guess 12'); ROLLBACK TO s12;
-- the right password, still inside the same snapshot: refused (locked)
SAVEPOINT s13;
SELECT (authctx.login('snap-olga@example.com', 'olga password 1')).session_id IS NOT NULL AS logged_in;
ROLLBACK TO s13;
-- our snapshot still shows no throttle row: the decision did not use it
SELECT count(*) AS throttle_rows_in_snapshot FROM authctx.login_throttle WHERE user_id = :'olga';
ROLLBACK;
-- committed, whatever the caller's transaction did: the threshold (5)
-- counted, later attempts during the lock audited but not counted
SELECT * FROM pg_temp.throttle(:'olga');
SELECT a.detail ->> 'reason' AS reason, count(*) FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.user_id = :'olga' GROUP BY 1 ORDER BY 1;
SELECT count(*) AS olga_sessions FROM authctx.sessions WHERE user_id = :'olga';

-- (b) the same from a function in one SERIALIZABLE transaction (savepoints
-- are the function's exception blocks)
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) AS throttle_rows_in_snapshot FROM authctx.login_throttle WHERE user_id = :'pete';
SELECT pg_temp.attempt('snap-pete@example.com', 'guess ' || i) AS attempt
  FROM generate_series(1, 12) i;
SELECT pg_temp.attempt('snap-pete@example.com', 'pete password 1') AS right_password;
ROLLBACK;
SELECT * FROM pg_temp.throttle(:'pete');
SELECT count(*) AS pete_sessions FROM authctx.sessions WHERE user_id = :'pete';

-- (c) psql's ON_ERROR_ROLLBACK wraps each statement in a savepoint: the
-- same attack without writing one; a fresh account, and the right password
-- as the very next attempt after the threshold
SELECT authctx.create_user('snap-quinn@example.com') AS quinn \gset
SELECT authctx.set_password(:'quinn', 'quinn password 1');
\set ON_ERROR_ROLLBACK on
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT 1 AS snapshot_taken;
SELECT authctx.login('snap-quinn@example.com', 'guess 1');
SELECT authctx.login('snap-quinn@example.com', 'guess 2');
SELECT authctx.login('snap-quinn@example.com', 'guess 3');
SELECT authctx.login('snap-quinn@example.com', 'guess 4');
SELECT authctx.login('snap-quinn@example.com', 'guess 5');
SELECT (authctx.login('snap-quinn@example.com', 'quinn password 1')).session_id IS NOT NULL AS logged_in;
COMMIT;
\set ON_ERROR_ROLLBACK off
SELECT * FROM pg_temp.throttle(:'quinn');
SELECT count(*) AS quinn_sessions FROM authctx.sessions WHERE user_id = :'quinn';

-- (d) a success in REPEATABLE READ clears the streak that the worker
-- committed after our snapshot, and the clearing outlives our rollback,
-- while the session does not
SELECT authctx.create_user('snap-rita@example.com') AS rita \gset
SELECT authctx.set_password(:'rita', 'rita password 1');
SELECT authctx.login('snap-rita@example.com', 'guess 1');
SELECT authctx.login('snap-rita@example.com', 'guess 2');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT failures AS failures_in_snapshot FROM pg_temp.throttle(:'rita');
SELECT (authctx.login('snap-rita@example.com', 'rita password 1')).session_id IS NOT NULL AS logged_in;
ROLLBACK;
SELECT count(*) AS rita_throttle_rows FROM pg_temp.throttle(:'rita');
SELECT count(*) AS rita_sessions FROM authctx.sessions WHERE user_id = :'rita';
SELECT count(*) AS rita_login_events FROM authctx.audit_log WHERE event = 'login' AND user_id = :'rita';
