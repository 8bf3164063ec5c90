-- Account flows with one-time tokens (axo_): email verification, password
-- reset, magic links, invitations; every bad input of issue 16.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse
\i test/support/try.sql

CREATE ROLE flows_app LOGIN IN ROLE authctx_app;
CREATE ROLE flows_manager LOGIN IN ROLE authctx_manager;
SELECT authctx.create_tenant('flows-acme') AS acme \gset
SELECT authctx.create_tenant('flows-beta') AS beta \gset
SELECT authctx.create_user('flows-olga@example.com', 'Olga') AS olga \gset
SELECT authctx.create_user('flows-pete@example.com') AS pete \gset
SELECT authctx.set_password(:'olga', 'olga password 1');
SELECT authctx.add_member('flows-acme', :'olga', 'member');

-- the new kind: axo_, 74 characters, the usual checksum
SET ROLE flows_manager;
SELECT authctx.create_one_time_token(:'olga', 'verify_email') AS v1 \gset
RESET ROLE;
SELECT left(:'v1', 4) AS prefix, length(:'v1') AS len, authctx._token_kind(:'v1') AS kind;
-- only a verifier is stored, and no text of the token anywhere
SELECT count(*) AS rows, bool_and(t.verifier = authctx._token_verifier(:'v1')) AS verifier_only
  FROM authctx.one_time_tokens t WHERE t.user_id = :'olga';
SELECT count(*) AS tables_holding_the_token
  FROM authctx.one_time_tokens t WHERE t::text LIKE '%' || substr(:'v1', 5) || '%';
-- a mistyped one fails the checksum (22P02 for the type, never echoed)
SELECT try(format('SELECT %L::authctx.token',
                  left(:'v1', 73) || CASE WHEN right(:'v1', 1) = 'A' THEN 'Q' ELSE 'A' END)) AS typo;

-- create_one_time_token: bad input
SELECT try(format('SELECT authctx.create_one_time_token(%L, %L)', :'olga', 'invite')) AS invite_purpose;
SELECT try(format('SELECT authctx.create_one_time_token(%L, %L)', :'olga', 'bogus')) AS bad_purpose;
SELECT try(format('SELECT authctx.create_one_time_token(%L, NULL)', :'olga')) AS null_purpose;
SELECT try(format('SELECT authctx.create_one_time_token(%L, %L, %L)', :'olga', 'magic_link', '-1 minute')) AS bad_ttl;
SELECT try(format('SELECT authctx.create_one_time_token(%L, %L)', '00000000-0000-4000-8000-000000000000', 'magic_link')) AS unknown_user;
-- the app may not make tokens
SET ROLE flows_app;
SELECT try(format('SELECT authctx.create_one_time_token(%L, %L)', :'olga', 'magic_link')) AS app_creates;
RESET ROLE;

-- verify_email: works once
SELECT (authctx.user_info(:'olga')).email_verified_at IS NULL AS unverified_before;
SET ROLE flows_app;
SELECT authctx.verify_email(:'v1') = :'olga' AS verified;
SELECT try(format('SELECT authctx.verify_email(%L)', :'v1')) AS used_twice;
RESET ROLE;
SELECT (authctx.user_info(:'olga')).email_verified_at IS NOT NULL AS verified_after;
-- a new address is not verified
SELECT authctx.set_email(:'olga', 'FLOWS-OLGA@example.com');
SELECT (authctx.user_info(:'olga')).email_verified_at IS NOT NULL AS same_address_still_verified;
SELECT authctx.create_one_time_token(:'olga', 'verify_email') AS v2 \gset
SELECT authctx.set_email(:'olga', 'flows-olga2@example.com');
SELECT (authctx.user_info(:'olga')).email_verified_at IS NULL AS new_address_unverified;
-- a token sent to the old address does nothing for the new one
SELECT try(format('SELECT authctx.verify_email(%L)', :'v2')) AS sent_to_old_address;
SELECT authctx.set_email(:'olga', 'flows-olga@example.com');

-- wrong purpose, another kind, garbage, NULL, expired, superseded: one error
SELECT authctx.create_one_time_token(:'olga', 'reset_password') AS r1 \gset
SELECT authctx.create_one_time_token(:'olga', 'verify_email', '1 microsecond') AS expired \gset
SELECT * FROM authctx.login('flows-olga@example.com', 'olga password 1') \gset
SELECT authctx.create_one_time_token(:'olga', 'magic_link') AS m_old \gset
SELECT authctx.create_one_time_token(:'olga', 'magic_link') AS m1 \gset
SET ROLE flows_app;
SELECT try(format('SELECT authctx.verify_email(%L)', :'r1')) AS other_purpose,
       try(format('SELECT authctx.verify_email(%L)', :'expired')) AS expired,
       try(format('SELECT authctx.verify_email(%L)', :'session_token')) AS session_token,
       try(format('SELECT authctx.verify_email(%L)', :'refresh_token')) AS refresh_token;
SELECT try($$SELECT authctx.verify_email('axo_garbage')$$) AS garbage,
       try($$SELECT authctx.verify_email(NULL)$$) AS null_token,
       try(format('SELECT authctx.reset_password(%L, %L)', :'m1', 'new password 1')) AS magic_as_reset;
-- a session or refresh token is no one-time token for the other flows either
SELECT try(format('SELECT authctx.reset_password(%L, %L)', :'session_token', 'new password 1')) AS reset_with_session,
       try(format('SELECT authctx.login_with_token(%L)', :'refresh_token')) AS login_with_refresh;
-- the older magic link was superseded by the newer one
SELECT try(format('SELECT authctx.login_with_token(%L)', :'m_old')) AS superseded;
-- and a one-time token is no session: auth_begin refuses it
SELECT try(format('SELECT auth_begin(%L)', :'m1')) AS auth_begin_one_time;
RESET ROLE;
-- at most one live token per user and purpose
SELECT t.purpose, count(*) FILTER (WHERE t.spent_at IS NULL AND t.revoked_at IS NULL) AS live,
       count(*) FILTER (WHERE t.revoked_at IS NOT NULL) AS superseded
  FROM authctx.one_time_tokens t WHERE t.user_id = :'olga' GROUP BY 1 ORDER BY 1;

-- login_with_token: a session and refresh token, the magic link spent
SET ROLE flows_app;
SELECT * FROM authctx.login_with_token(:'m1') \gset ml_
SELECT :'ml_tenant_id' = :'acme' AS only_tenant, :'ml_session_token' LIKE 'axs\_%' AS session;
SELECT (auth_begin(:'ml_session_token')).user_id = :'olga' AS link_session_works;
SELECT authctx.amr() AS link_amr FROM auth_begin(:'ml_session_token');
SELECT try(format('SELECT authctx.login_with_token(%L)', :'m1')) AS link_used_twice;
RESET ROLE;
SELECT a.detail ->> 'method' AS login_method FROM authctx.audit_log a
 WHERE a.event = 'login' AND a.session_id = :'ml_session_id';
-- failures are recorded (as login_failed) although the call raised
SELECT a.detail ->> 'reason' AS reason, a.detail ->> 'method' AS method, count(*)
  FROM authctx.audit_log a
 WHERE a.event = 'login_failed' AND a.detail ->> 'method' = 'magic_link'
 GROUP BY 1, 2 ORDER BY 1;
-- tenant: one the user does not belong to is a login failure
SELECT authctx.create_one_time_token(:'olga', 'magic_link') AS m2 \gset
SET ROLE flows_app;
SELECT try(format('SELECT authctx.login_with_token(%L, %L)', :'m2', 'flows-beta')) AS not_member;
SELECT (authctx.login_with_token(:'m2', 'flows-acme')).tenant_id = :'acme' AS named_tenant;
RESET ROLE;
-- the lockout holds for links: a locked account cannot use one, and the
-- link survives the refusal
SELECT authctx.create_one_time_token(:'olga', 'magic_link') AS m3 \gset
INSERT INTO authctx.login_throttle (user_id, failures, last_failure_at, locked_until)
VALUES (:'olga', 5, clock_timestamp(), clock_timestamp() + interval '1 hour');
SET ROLE flows_app;
SELECT try(format('SELECT authctx.login_with_token(%L)', :'m3')) AS locked;
RESET ROLE;
DELETE FROM authctx.login_throttle WHERE user_id = :'olga';
SET ROLE flows_app;
SELECT (authctx.login_with_token(:'m3')).session_id IS NOT NULL AS after_unlock;
RESET ROLE;
-- a disabled user cannot
SELECT authctx.create_one_time_token(:'pete', 'magic_link') AS mp \gset
SELECT authctx.disable_user(:'pete');
SET ROLE flows_app;
SELECT try(format('SELECT authctx.login_with_token(%L)', :'mp')) AS disabled;
RESET ROLE;
SELECT authctx.enable_user(:'pete');
-- nor in a read-only transaction
BEGIN READ ONLY;
SELECT try(format('SELECT authctx.login_with_token(%L)', :'mp')) AS read_only;
ROLLBACK;

-- reset_password: a password that breaks the length rules is 22023 and
-- leaves the token unspent
SELECT (authctx.login('flows-olga@example.com', 'olga password 1')).session_token AS s_before \gset
SELECT authctx.create_one_time_token(:'olga', 'magic_link') AS m_before \gset
SET ROLE flows_app;
SELECT try(format('SELECT authctx.reset_password(%L, %L)', :'r1', 'short')) AS too_short;
SELECT try(format('SELECT authctx.reset_password(%L, NULL)', :'r1')) AS null_password;
RESET ROLE;
SELECT t.spent_at IS NULL AS not_spent FROM authctx.one_time_tokens t
 WHERE t.id = authctx._token_id(:'r1');
-- the reset revokes every session (the caller's too), refresh token and
-- outstanding one-time token, and logs nobody in
SET ROLE flows_app;
BEGIN;
SELECT (auth_begin(:'s_before')).user_id = :'olga' AS in_own_session;
SELECT authctx.reset_password(:'r1', 'olga password 2') = :'olga' AS reset;
COMMIT;
SELECT try(format('SELECT auth_begin(%L)', :'s_before')) AS old_session,
       try(format('SELECT auth_begin(%L)', :'ml_session_token')) AS link_session,
       try(format('SELECT authctx.refresh(%L)', :'ml_refresh_token')) AS old_refresh,
       try(format('SELECT authctx.login_with_token(%L)', :'m_before')) AS outstanding_link;
SELECT try(format('SELECT authctx.reset_password(%L, %L)', :'r1', 'olga password 3')) AS reset_twice;
SELECT try($$SELECT authctx.login('flows-olga@example.com', 'olga password 1')$$) AS old_password;
SELECT (authctx.login('flows-olga@example.com', 'olga password 2')).session_id IS NOT NULL AS new_password;
RESET ROLE;
SELECT count(*) AS live_sessions_after_reset_before_login
  FROM authctx.sessions s WHERE s.user_id = :'olga' AND s.revoked_at IS NULL
   AND s.created_at < (SELECT max(occurred_at) FROM authctx.audit_log WHERE event = 'password_reset');
SELECT a.detail ? 'token_id' AS has_token_id, (a.detail ->> 'revoked_one_time_tokens')::int AS revoked_tokens
  FROM authctx.audit_log a WHERE a.event = 'password_reset' AND a.user_id = :'olga';

-- invitations
SET ROLE flows_manager;
SELECT authctx.invite_member('flows-beta', 'flows-pete@EXAMPLE.com', 'editor') AS inv_old \gset
SELECT authctx.invite_member('flows-beta', 'flows-pete@example.com', 'editor') AS inv \gset
SELECT try(format('SELECT authctx.invite_member(%L, %L)', 'flows-nope', 'x@example.com')) AS unknown_tenant,
       try(format('SELECT authctx.invite_member(%L, %L)', 'flows-beta', 'not an email')) AS bad_email,
       try(format('SELECT authctx.invite_member(%L, %L, %L)', 'flows-beta', 'x@example.com', '')) AS bad_role,
       try(format('SELECT authctx.invite_member(%L, %L, %L, %L)', 'flows-beta', 'x@example.com', 'member', '0')) AS bad_ttl;
-- another user (another email): 42501, and the invitation is not spent
SELECT try(format('SELECT authctx.accept_invite(%L, %L)', :'inv', :'olga')) AS other_email;
SELECT try(format('SELECT authctx.accept_invite(%L, %L)', :'inv_old', :'pete')) AS superseded_invite;
SELECT try(format('SELECT authctx.accept_invite(%L, %L)', :'r1', :'pete')) AS not_an_invite;
SELECT try(format('SELECT authctx.verify_email(%L)', :'inv')) AS invite_as_verify;
SELECT authctx.accept_invite(:'inv', :'pete') = :'beta' AS accepted;
SELECT try(format('SELECT authctx.accept_invite(%L, %L)', :'inv', :'pete')) AS accepted_twice;
RESET ROLE;
SELECT tenant_id = :'beta' AS tenant, role FROM authctx.list_memberships(:'pete');
SET ROLE flows_app;
SELECT try(format('SELECT authctx.accept_invite(%L, %L)', :'inv', :'pete')) AS app_accepts;
RESET ROLE;

-- user_info
SELECT email, display_name, email_verified_at IS NULL AS unverified, disabled, totp_enabled
  FROM authctx.user_info(:'olga');
SELECT try(format('SELECT authctx.user_info(%L)', '00000000-0000-4000-8000-000000000000')) AS unknown_user;

-- audit: the events, and no token text in any detail
SELECT a.event, count(*) > 0 AS present FROM authctx.audit_log a
 WHERE a.event IN ('one_time_token_created', 'email_verified', 'password_reset', 'invite_accepted')
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS audit_rows_with_a_token
  FROM authctx.audit_log a
 WHERE a.detail::text ~ 'ax[srko]_' OR a.detail::text LIKE '%' || substr(:'inv', 5, 20) || '%';

-- cleanup() removes expired, spent and revoked tokens, and only those
SELECT authctx.create_one_time_token(:'pete', 'verify_email') AS live \gset
SELECT count(*) > 0 AS dead_before FROM authctx.one_time_tokens t
 WHERE t.expires_at < clock_timestamp() OR t.spent_at IS NOT NULL OR t.revoked_at IS NOT NULL;
SELECT authctx.cleanup() > 0 AS removed;
SELECT count(*) AS dead_after FROM authctx.one_time_tokens t
 WHERE t.expires_at < clock_timestamp() OR t.spent_at IS NOT NULL OR t.revoked_at IS NOT NULL;
SELECT authctx.verify_email(:'live') = :'pete' AS live_token_survives;

-- Each database is its own world: a token of this one is unknown in
-- another (the tables decide)
SELECT authctx.create_one_time_token(:'pete', 'magic_link') AS here \gset
SELECT current_database() AS db1 \gset
CREATE DATABASE flows_other;
\c flows_other
SET client_min_messages = warning;
CREATE EXTENSION authctx;
RESET client_min_messages;
\set VERBOSITY terse
\i test/support/try.sql
SELECT try(format('SELECT authctx.login_with_token(%L)', :'here')) AS other_database,
       try(format('SELECT authctx.verify_email(%L)', :'here')) AS other_database_verify;
DROP EXTENSION authctx CASCADE;
\c :db1
SET client_min_messages = warning;
DROP DATABASE flows_other;
RESET client_min_messages;
\set VERBOSITY terse
SELECT (authctx.login_with_token(:'here')).session_id IS NOT NULL AS here_it_works;

DROP ROLE flows_app, flows_manager;
