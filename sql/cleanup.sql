-- cleanup(): removes revoked and expired rows (after a margin), keeps
-- everything live, the spent refresh tokens that detect reuse, the session
-- rows of login families that can still refresh, and the lockout rows, in
-- batches; returns the number of rows removed.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

-- rows in the tables cleanup() works on
CREATE FUNCTION pg_temp.rows() RETURNS bigint LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM authctx.sessions) + (SELECT count(*) FROM authctx.refresh_tokens)
       + (SELECT count(*) FROM authctx.api_keys) + (SELECT count(*) FROM authctx.webauthn_challenges)
       + (SELECT count(*) FROM authctx.login_throttle) + (SELECT count(*) FROM authctx.one_time_tokens);
$$;

SELECT authctx.create_tenant('clean-acme') IS NOT NULL AS tenant;
SELECT authctx.create_user('clean-max@example.com') AS max \gset
SELECT authctx.set_password(:'max', 'max password 1'), authctx.add_member('clean-acme', :'max');

-- sessions, each aged into one state (margin = 1 hour + last_seen_interval)
CREATE TEMP TABLE s (label text, id uuid, keep boolean);
INSERT INTO s SELECT x.label, authctx._token_id(authctx.create_session(:'max')), x.keep
  FROM (VALUES ('live', true), ('revoked long ago', false), ('revoked just now', true),
               ('expired long ago', false), ('expired just now', true),
               ('idle long ago', false), ('idle just now', true)) x(label, keep);
UPDATE authctx.sessions t SET revoked_at = clock_timestamp() - interval '2 hours'
  FROM s WHERE s.id = t.id AND s.label = 'revoked long ago';
UPDATE authctx.sessions t SET revoked_at = clock_timestamp() - interval '1 minute'
  FROM s WHERE s.id = t.id AND s.label = 'revoked just now';
UPDATE authctx.sessions t SET expires_at = clock_timestamp() - interval '2 hours'
  FROM s WHERE s.id = t.id AND s.label = 'expired long ago';
UPDATE authctx.sessions t SET expires_at = clock_timestamp() - interval '1 minute'
  FROM s WHERE s.id = t.id AND s.label = 'expired just now';
UPDATE authctx.sessions t SET last_seen_at = clock_timestamp() - interval '3 hours'
  FROM s WHERE s.id = t.id AND s.label = 'idle long ago';
UPDATE authctx.sessions t SET last_seen_at = clock_timestamp() - interval '90 minutes'
  FROM s WHERE s.id = t.id AND s.label = 'idle just now';

-- refresh tokens: spent ones stay until they expire (they detect reuse)
CREATE TEMP TABLE r (label text, tok authctx.token, keep boolean, id uuid GENERATED ALWAYS AS (authctx._token_id(tok)) STORED);
INSERT INTO r SELECT x.label, (authctx.login('clean-max@example.com', 'max password 1')).refresh_token, x.keep
  FROM (VALUES ('live', true), ('spent', true), ('expired long ago', false),
               ('revoked long ago', false)) x(label, keep);
UPDATE authctx.refresh_tokens t SET spent_at = clock_timestamp() - interval '2 hours'
  FROM r WHERE r.id = t.id AND r.label = 'spent';
UPDATE authctx.refresh_tokens t SET expires_at = clock_timestamp() - interval '2 hours'
  FROM r WHERE r.id = t.id AND r.label = 'expired long ago';
UPDATE authctx.refresh_tokens t SET revoked_at = clock_timestamp() - interval '2 hours'
  FROM r WHERE r.id = t.id AND r.label = 'revoked long ago';

-- API keys
CREATE TEMP TABLE k (label text, id uuid, keep boolean);
INSERT INTO k SELECT x.label, authctx._token_id(authctx.create_api_key(:'max', 'clean-acme', x.label, '{}', x.expires)), x.keep
  FROM (VALUES ('no expiry', NULL::timestamptz, true),
               ('expires later', clock_timestamp() + interval '1 day', true),
               ('expired long ago', clock_timestamp() + interval '1 day', false),
               ('revoked long ago', NULL, false)) x(label, expires, keep);
UPDATE authctx.api_keys t SET expires_at = clock_timestamp() - interval '2 hours'
  FROM k WHERE k.id = t.id AND k.label = 'expired long ago';
UPDATE authctx.api_keys t SET revoked_at = clock_timestamp() - interval '2 hours'
  FROM k WHERE k.id = t.id AND k.label = 'revoked long ago';

-- WebAuthn challenges and lockout rows (lockout rows are never deleted: one
-- per account at most, and a lockout write must never wait for a cleanup)
INSERT INTO authctx.webauthn_challenges (challenge, expires_at)
VALUES ('\xc1ea0001'::bytea, clock_timestamp() + interval '5 minutes'),
       ('\xc1ea0002'::bytea, clock_timestamp() - interval '2 hours');
SELECT authctx.create_user('clean-ned@example.com') AS ned \gset
INSERT INTO authctx.login_throttle (user_id, failures, last_failure_at, locked_until)
VALUES (:'max', 2, clock_timestamp() - interval '1 minute', NULL),
       (:'ned', 7, clock_timestamp() - interval '1 day', clock_timestamp() - interval '23 hours');

-- many expired sessions: more than two batches of 5,000
INSERT INTO authctx.sessions (id, user_id, family_id, verifier, created_at, last_seen_at, expires_at)
SELECT gen_random_uuid(), :'max', gen_random_uuid(), '\x00'::bytea,
       clock_timestamp() - interval '3 days', clock_timestamp() - interval '3 days',
       clock_timestamp() - interval '2 days'
  FROM generate_series(1, 12001);

-- the run: its result is exactly the rows that went
SELECT pg_temp.rows() AS before \gset
SELECT authctx.cleanup() AS removed \gset
SELECT :removed = :before - pg_temp.rows() AS result_matches, :removed >= 12001 + 8 AS removed_enough;
SELECT s.label, EXISTS (SELECT 1 FROM authctx.sessions t WHERE t.id = s.id) AS kept, s.keep AS should_keep
  FROM s ORDER BY s.label;
SELECT r.label, EXISTS (SELECT 1 FROM authctx.refresh_tokens t WHERE t.id = r.id) AS kept, r.keep AS should_keep
  FROM r ORDER BY r.label;
SELECT k.label, EXISTS (SELECT 1 FROM authctx.api_keys t WHERE t.id = k.id) AS kept, k.keep AS should_keep
  FROM k ORDER BY k.label;
SELECT encode(c.challenge, 'hex') AS challenge_kept FROM authctx.webauthn_challenges c
 WHERE c.challenge IN ('\xc1ea0001'::bytea, '\xc1ea0002'::bytea);
SELECT count(*) AS throttle_rows_kept FROM authctx.login_throttle t
 WHERE t.user_id IN (:'max', :'ned');
SELECT count(*) AS bulk_left FROM authctx.sessions t
 WHERE t.user_id = :'max' AND t.expires_at < clock_timestamp() - interval '1 day';
-- nothing left to do
SELECT authctx.cleanup() AS second_run;
-- a spent token that survived cleanup still detects its reuse
SELECT count(*) AS live_sessions_before FROM authctx.list_sessions(:'max');
SELECT r.tok::text AS spent_token FROM r WHERE r.label = 'spent' \gset
SELECT authctx.refresh(:'spent_token');
SELECT count(*) AS live_sessions_after FROM authctx.list_sessions(:'max');
