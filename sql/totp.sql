-- TOTP second factors (RFC 6238): enrolment, confirmation, recovery codes,
-- verify_totp inside a session's context, replay, lockout; every bad input
-- of issue 16.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse
\i test/support/try.sql

-- RFC 6238 appendix B, the HMAC-SHA1 rows (seed "12345678901234567890",
-- 8 digits): the HOTP core is libcrypto's HMAC and our truncation
SELECT t, authctx._totp_code('12345678901234567890'::bytea, t, 8) AS code
  FROM unnest(ARRAY[59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000]::bigint[]) t;
SELECT authctx._totp_code('12345678901234567890'::bytea, 59, 6) AS six_digits;
SELECT try($$SELECT authctx._totp_code('k'::bytea, 59, 5)$$) AS five_digits;

-- what an authenticator app does with an otpauth:// URI
CREATE FUNCTION pg_temp.b32(s text) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  bits text := '';
  result bytea := '';
BEGIN
  FOR i IN 1 .. length(s) LOOP
    bits := bits || ((position(substr(s, i, 1) IN 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567') - 1)::bit(5))::text;
  END LOOP;
  FOR i IN 0 .. length(bits) / 8 - 1 LOOP
    result := result || set_byte('\x00'::bytea, 0, substring(bits FROM i * 8 + 1 FOR 8)::bit(8)::integer);
  END LOOP;
  RETURN result;
END
$$;
CREATE TEMP TABLE app_keys (user_id uuid PRIMARY KEY, key bytea);
CREATE FUNCTION pg_temp.scan(p_user uuid, p_uri text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO app_keys VALUES (p_user, pg_temp.b32(substring(p_uri FROM 'secret=([A-Z2-7]+)')))
  ON CONFLICT (user_id) DO UPDATE SET key = excluded.key;
$$;
-- as if the codes used so far were long ago (each step's code is accepted
-- once: a test within one 30-second step would otherwise run out of them)
CREATE FUNCTION pg_temp.forget_steps(p_user uuid) RETURNS void LANGUAGE sql AS $$
  UPDATE authctx.totp_factors SET last_step = NULL WHERE user_id = p_user;
$$;
-- as if the failures so far were long ago: the lockout row, and the
-- totp_failed events the codes' own streak is read from
CREATE FUNCTION pg_temp.forget_failures(p_user uuid) RETURNS void LANGUAGE sql AS $$
  DELETE FROM authctx.login_throttle WHERE user_id = p_user;
  UPDATE authctx.audit_log SET occurred_at = occurred_at - interval '1 day'
   WHERE user_id = p_user AND event = 'totp_failed';
$$;
-- the code the app shows at a time offset (in steps) from now
CREATE FUNCTION pg_temp.code(p_user uuid, p_steps integer DEFAULT 0) RETURNS text LANGUAGE sql AS $$
  SELECT authctx._totp_code(k.key, extract(epoch FROM clock_timestamp())::bigint + 30 * p_steps, 6)
    FROM app_keys k WHERE k.user_id = p_user;
$$;

-- a code that is not valid now (none of the steps -1 .. +2)
CREATE FUNCTION pg_temp.wrong(p_user uuid, p_seed integer) RETURNS text LANGUAGE sql AS $$
  SELECT c FROM (SELECT lpad(((p_seed * 7919 + i) % 1000000)::text, 6, '0') AS c, i
                   FROM generate_series(0, 9) i) x
   WHERE c NOT IN (SELECT pg_temp.code(p_user, d) FROM generate_series(-1, 2) d)
   ORDER BY i LIMIT 1;
$$;
CREATE ROLE totp_app LOGIN IN ROLE authctx_app;
CREATE ROLE totp_manager LOGIN IN ROLE authctx_manager;
SELECT authctx.create_tenant('totp-acme') AS acme \gset
SELECT authctx.create_user('totp-quinn@example.com') AS quinn \gset
SELECT authctx.create_user('totp-rosa@example.com') AS rosa \gset
SELECT authctx.set_password(:'quinn', 'quinn password 1');
SELECT authctx.add_member('totp-acme', :'quinn', 'member');
SELECT authctx.add_member('totp-acme', :'rosa', 'member');

-- without authctx.secret_key: 55000 with a hint, nothing stored
SET authctx.secret_key = '';
SET ROLE totp_manager;
SELECT try(format('SELECT authctx.enroll_totp(%L)', :'quinn')) AS no_key;
RESET ROLE;
SET authctx.secret_key = 'not hex';
SELECT try(format('SELECT authctx.enroll_totp(%L)', :'quinn')) AS bad_key;
SELECT count(*) AS factors FROM authctx.totp_factors WHERE user_id = :'quinn';
-- only a superuser may set or read it
SET authctx.secret_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SET ROLE totp_app;
SELECT try($$SET authctx.secret_key = '1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100'$$) AS app_sets_key;
SELECT try($$SHOW authctx.secret_key$$) AS app_reads_key;
RESET ROLE;

-- enrolment: an otpauth:// URI of a 160-bit secret, pending
SET ROLE totp_manager;
SELECT authctx.enroll_totp(:'quinn') AS uri1 \gset
RESET ROLE;
SELECT :'uri1' ~ '^otpauth://totp/authctx:totp-quinn@example\.com\?secret=[A-Z2-7]{32}&issuer=authctx&algorithm=SHA1&digits=6&period=30$' AS uri_shape;
SELECT pg_temp.scan(:'quinn', :'uri1');
SELECT octet_length(key) AS secret_bytes FROM app_keys WHERE user_id = :'quinn';
-- stored sealed (nonce, MAC, ciphertext), never in clear
SELECT secret IS NULL AS not_active, octet_length(pending_secret) AS sealed_bytes,
       position(k.key IN f.pending_secret) = 0 AS not_in_clear
  FROM authctx.totp_factors f JOIN app_keys k USING (user_id) WHERE f.user_id = :'quinn';
SELECT totp_enabled FROM authctx.user_info(:'quinn');
-- re-enrolling replaces a pending secret
SET ROLE totp_manager;
SELECT authctx.enroll_totp(:'quinn') AS uri2 \gset
RESET ROLE;
SELECT :'uri1' <> :'uri2' AS new_secret;
SELECT pg_temp.code(:'quinn') AS old_code \gset
SELECT pg_temp.scan(:'quinn', :'uri2');
SELECT pg_temp.code(:'quinn') AS code \gset
SET ROLE totp_manager;
SELECT try(format('SELECT authctx.confirm_totp(%L, %L)', :'quinn', :'old_code')) AS replaced_secret_code;
SELECT try(format('SELECT authctx.confirm_totp(%L, %L)', :'quinn', '12345')) AS malformed_code;
SELECT try(format('SELECT authctx.confirm_totp(%L, NULL)', :'quinn')) AS null_code;
SELECT try(format('SELECT authctx.confirm_totp(%L, %L)', :'rosa', :'code')) AS nothing_pending;
-- confirmation: 10 distinct single-use recovery codes, stored as verifiers
SELECT authctx.confirm_totp(:'quinn', :'code') AS rc \gset
RESET ROLE;
SELECT cardinality(:'rc'::text[]) AS codes,
       (SELECT count(DISTINCT c) FROM unnest(:'rc'::text[]) c) AS distinct_codes,
       (SELECT bool_and(c ~ '^[0-9a-hjkmnp-tv-z]{5}(-[0-9a-hjkmnp-tv-z]{5}){3}$') FROM unnest(:'rc'::text[]) c) AS shaped;
SELECT count(*) AS stored, bool_and(octet_length(verifier) = 32) AS verifiers
  FROM authctx.totp_recovery_codes WHERE user_id = :'quinn';
SELECT count(*) AS stored_code_text FROM authctx.totp_recovery_codes r, unnest(:'rc'::text[]) c
 WHERE position(convert_to(c, 'UTF8') IN r.verifier) > 0;
SELECT totp_enabled FROM authctx.user_info(:'quinn');
SELECT secret IS NOT NULL AS active, pending_secret IS NULL AS nothing_pending FROM authctx.totp_factors WHERE user_id = :'quinn';

-- the window: the current step and one either side, not two
SELECT secret AS sealed FROM authctx.totp_factors WHERE user_id = :'quinn' \gset
SELECT d AS steps_away,
       authctx._totp_match(:'quinn', :'sealed',
                           authctx._totp_code(k.key, 1700000015 + 30 * d, 6), -1,
                           to_timestamp(1700000015)) IS NOT NULL AS accepted
  FROM app_keys k, generate_series(-2, 2) d WHERE k.user_id = :'quinn' ORDER BY d;
-- a box copied onto another user's row does not open there
SELECT try(format('SELECT authctx._totp_match(%L, %L, %L, -1, now())', :'rosa', :'sealed', '123456')) AS other_users_box;

-- verify_totp: no context 28000, an API key 42501
SELECT authctx.create_session(:'quinn') AS s1 \gset
SELECT authctx.create_api_key(:'quinn', 'totp-acme', 'ci') AS k1 \gset
SET ROLE totp_app;
SELECT try($$SELECT authctx.verify_totp('123456')$$) AS no_context;
BEGIN;
SELECT (auth_begin(:'k1')).auth_method;
SELECT try($$SELECT authctx.verify_totp('123456')$$) AS api_key;
ROLLBACK;
RESET ROLE;

-- a code from two steps ago, then the current code twice
SELECT pg_temp.code(:'quinn', -2) AS two_steps_ago, pg_temp.code(:'quinn') AS now_code \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT try($$SELECT authctx.verify_totp(NULL)$$) AS null_code;
SELECT authctx.verify_totp(:'two_steps_ago') AS two_steps_ago;
COMMIT;
RESET ROLE;
SELECT pg_temp.forget_steps(:'quinn');
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'now_code') AS first_use;
SELECT authctx.verify_totp(:'now_code') AS same_code_again;
COMMIT;
-- a recovery code works once (case and hyphens do not matter)
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(upper(replace((:'rc'::text[])[1], '-', ''))) AS recovery_code;
SELECT authctx.verify_totp((:'rc'::text[])[1]) AS recovery_code_again;
SELECT authctx.verify_totp('not-a-recovery-code') AS garbage;
COMMIT;
RESET ROLE;
SELECT count(*) FILTER (WHERE spent_at IS NOT NULL) AS spent_codes FROM authctx.totp_recovery_codes WHERE user_id = :'quinn';
-- every failure was counted toward the lockout, outside the caller's
-- transaction, and audited as totp_failed
SELECT failures FROM authctx.login_throttle WHERE user_id = :'quinn';
SELECT a.detail ->> 'reason' AS reason, count(*) FROM authctx.audit_log a
 WHERE a.event = 'totp_failed' AND a.user_id = :'quinn' GROUP BY 1;
SELECT a.detail ->> 'method' AS method, count(*) FROM authctx.audit_log a
 WHERE a.event = 'totp_verified' AND a.user_id = :'quinn' GROUP BY 1 ORDER BY 1;
-- even when the caller rolls back
SELECT pg_temp.wrong(:'quinn', 1) AS w1, pg_temp.wrong(:'quinn', 2) AS w2 \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'w1') AS wrong1;
SELECT authctx.verify_totp(:'w2') AS wrong2;
ROLLBACK;
RESET ROLE;
SELECT failures FROM authctx.login_throttle WHERE user_id = :'quinn';
SELECT pg_temp.forget_failures(:'quinn');

-- 100 wrong codes: the account locks as for passwords (threshold 5); the
-- attempts during the lock are audited, not counted, and the right code
-- and the right password are refused while it lasts (a lock long enough
-- to outlast the loop on a slow machine)
SET authctx.lockout_base_delay = '10min';
SET authctx.lockout_max_delay = '20min';
SELECT pg_temp.code(:'quinn', -1) AS c_prev, pg_temp.code(:'quinn') AS c_now,
       pg_temp.code(:'quinn', 1) AS c_next, pg_temp.code(:'quinn', 2) AS c_next2 \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT count(*) FILTER (WHERE NOT authctx.verify_totp(c)) AS refused
  FROM (SELECT lpad((n * 7919)::text, 6, '0') AS c FROM generate_series(1, 100) n) w
 WHERE c NOT IN (:'c_prev', :'c_now', :'c_next', :'c_next2');
COMMIT;
RESET ROLE;
SELECT failures, locked_until > clock_timestamp() AS locked
  FROM authctx.login_throttle WHERE user_id = :'quinn';
SELECT pg_temp.code(:'quinn', 1) AS c_next \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'c_next') AS right_code_while_locked;
COMMIT;
SELECT try($$SELECT authctx.login('totp-quinn@example.com', 'quinn password 1')$$) AS password_while_locked;
RESET ROLE;
SELECT a.detail ->> 'reason' AS reason, count(*) >= 90 AS many FROM authctx.audit_log a
 WHERE a.event = 'totp_failed' AND a.user_id = :'quinn' AND a.detail ->> 'reason' = 'locked' GROUP BY 1;
SELECT pg_temp.forget_failures(:'quinn');
RESET authctx.lockout_base_delay;
RESET authctx.lockout_max_delay;
SELECT pg_temp.forget_steps(:'quinn');
SELECT pg_temp.code(:'quinn') AS c_now \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'c_now') AS right_code_after_unlock;
COMMIT;
RESET ROLE;

-- A password login clears the account's streak, but not the codes' own:
-- knowing the password, one cannot log in again after every few wrong
-- codes and guess on
SELECT pg_temp.wrong(:'quinn', 3) AS w3 \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT count(*) FILTER (WHERE NOT authctx.verify_totp(:'w3')) AS four_wrong FROM generate_series(1, 4);
COMMIT;
SELECT (authctx.login('totp-quinn@example.com', 'quinn password 1')).session_id IS NOT NULL AS password_login;
RESET ROLE;
SELECT count(*) AS throttle_rows FROM authctx.login_throttle WHERE user_id = :'quinn';
SELECT pg_temp.forget_steps(:'quinn');
SELECT pg_temp.code(:'quinn') AS c_now \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'w3') AS fifth_wrong;
SELECT authctx.verify_totp(:'c_now') AS right_code_after_five;
COMMIT;
RESET ROLE;
SELECT failures, locked_until IS NULL AS account_not_locked FROM authctx.login_throttle WHERE user_id = :'quinn';
SELECT a.detail ->> 'reason' AS last_reason FROM authctx.audit_log a
 WHERE a.event = 'totp_failed' AND a.user_id = :'quinn' ORDER BY a.id DESC LIMIT 1;
SELECT pg_temp.forget_failures(:'quinn');

-- Step-up: success adds 'otp' to the session's amr, visible from the next
-- auth_begin on, for that session only; refresh carries it on
SELECT * FROM authctx.login('totp-quinn@example.com', 'quinn password 1') \gset l_
SELECT * FROM authctx.login('totp-quinn@example.com', 'quinn password 1') \gset o_
SELECT pg_temp.forget_steps(:'quinn');
SELECT pg_temp.code(:'quinn') AS c_now \gset
SET ROLE totp_app;
BEGIN;
SELECT authctx.amr() AS amr_before FROM auth_begin(:'l_session_token');
SELECT authctx.verify_totp(:'c_now') AS stepped_up;
SELECT authctx.amr() AS same_transaction;
COMMIT;
SELECT authctx.amr() AS next_auth_begin FROM auth_begin(:'l_session_token');
SELECT authctx.amr() AS other_session FROM auth_begin(:'o_session_token');
RESET ROLE;
SELECT pg_temp.forget_steps(:'quinn');
SELECT pg_temp.code(:'quinn') AS c_now \gset
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'l_session_token')).user_id = :'quinn' AS in_session;
SELECT authctx.verify_totp(:'c_now') AS again;
COMMIT;
SELECT authctx.amr() AS not_repeated FROM auth_begin(:'l_session_token');
SELECT * FROM authctx.refresh(:'l_refresh_token') \gset r_
SELECT authctx.amr() AS after_refresh FROM auth_begin(:'r_session_token');
RESET ROLE;

-- The policy recipe (README, "Step-up in policies"): reads need a
-- session, writes a second factor or a passkey login
CREATE TABLE totp_docs (id serial PRIMARY KEY, tenant_id uuid, body text);
SET client_min_messages = warning;
SELECT authctx.enable_tenant_isolation('totp_docs');
RESET client_min_messages;
CREATE POLICY totp_docs_insert_step_up ON totp_docs AS RESTRICTIVE FOR INSERT
  WITH CHECK ('otp' = ANY (authctx.amr()) OR 'webauthn' = ANY (authctx.amr()));
CREATE POLICY totp_docs_update_step_up ON totp_docs AS RESTRICTIVE FOR UPDATE
  USING ('otp' = ANY (authctx.amr()) OR 'webauthn' = ANY (authctx.amr()));
CREATE POLICY totp_docs_delete_step_up ON totp_docs AS RESTRICTIVE FOR DELETE
  USING ('otp' = ANY (authctx.amr()) OR 'webauthn' = ANY (authctx.amr()));
GRANT SELECT, INSERT, UPDATE, DELETE ON totp_docs TO totp_app;
GRANT USAGE ON SEQUENCE totp_docs_id_seq TO totp_app;
INSERT INTO totp_docs (tenant_id, body) VALUES (:'acme', 'seeded');
-- a passkey login's session (its amr as login_webauthn records it)
SELECT authctx.create_session(:'quinn') AS s_passkey \gset
UPDATE authctx.sessions SET amr = '{webauthn}' WHERE id = authctx._token_id(:'s_passkey');
SET ROLE totp_app;
-- password only: reads yes, writes no
BEGIN;
SELECT authctx.amr() AS amr, (SELECT count(*) FROM totp_docs) AS reads
  FROM auth_begin(:'o_session_token');
SELECT try($$INSERT INTO totp_docs (body) VALUES ('no')$$) AS insert_without_step_up;
WITH u AS (UPDATE totp_docs SET body = 'changed' RETURNING 1) SELECT count(*) AS updated FROM u;
WITH d AS (DELETE FROM totp_docs RETURNING 1) SELECT count(*) AS deleted FROM d;
COMMIT;
-- stepped up with TOTP: writes too
BEGIN;
SELECT authctx.amr() AS amr FROM auth_begin(:'r_session_token');
INSERT INTO totp_docs (body) VALUES ('with otp');
WITH u AS (UPDATE totp_docs SET body = body || '!' RETURNING 1) SELECT count(*) AS updated FROM u;
COMMIT;
-- a passkey login: writes too
BEGIN;
SELECT authctx.amr() AS amr FROM auth_begin(:'s_passkey');
INSERT INTO totp_docs (body) VALUES ('with passkey');
COMMIT;
RESET ROLE;
SELECT body FROM totp_docs ORDER BY id;
DROP TABLE totp_docs;

-- another key cannot open the secrets: 55000, never a silent mismatch
SET authctx.secret_key = '1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100';
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT try($$SELECT authctx.verify_totp('123456')$$) AS other_key;
ROLLBACK;
RESET ROLE;
SET authctx.secret_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';

-- re-enrolling an active factor keeps it active until confirmed
SET ROLE totp_manager;
SELECT authctx.enroll_totp(:'quinn') IS NOT NULL AS re_enrolled;
RESET ROLE;
SELECT secret IS NOT NULL AS still_active, pending_secret IS NOT NULL AS pending
  FROM authctx.totp_factors WHERE user_id = :'quinn';

-- disable: factor and codes gone, audited; verify_totp then 55000
SET ROLE totp_manager;
SELECT authctx.disable_totp(:'quinn');
RESET ROLE;
SELECT (SELECT count(*) FROM authctx.totp_factors WHERE user_id = :'quinn') AS factors,
       (SELECT count(*) FROM authctx.totp_recovery_codes WHERE user_id = :'quinn') AS codes;
SET ROLE totp_app;
BEGIN;
SELECT (auth_begin(:'s1')).user_id = :'quinn' AS in_session;
SELECT try($$SELECT authctx.verify_totp('123456')$$) AS disabled;
ROLLBACK;
SELECT try(format('SELECT authctx.enroll_totp(%L)', :'quinn')) AS app_enrolls;
RESET ROLE;
SELECT a.event, count(*) FROM authctx.audit_log a
 WHERE a.user_id = :'quinn' AND a.event IN ('totp_enabled', 'totp_disabled') GROUP BY 1 ORDER BY 1;

-- no code, recovery code or secret in any audit detail
SELECT count(*) AS audit_rows_with_secrets FROM authctx.audit_log a, app_keys k
 WHERE a.detail::text LIKE '%' || :'now_code' || '%'
    OR a.detail::text LIKE '%' || (:'rc'::text[])[2] || '%'
    OR a.detail::text LIKE '%' || substring(:'uri2' FROM 'secret=([A-Z2-7]+)') || '%';

RESET authctx.secret_key;
DROP ROLE totp_app, totp_manager;
