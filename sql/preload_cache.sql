-- The shared-memory session cache (runs in the preload mode only): hits and
-- misses, and every change that must be honoured by the very next
-- auth_begin -- revocation, disable, role change, membership removal,
-- password change, TRUNCATE, reinstallation -- while an aborted change
-- leaves the cache as it was, and revoking one session leaves the user's
-- other sessions cached.  Each database is its own world.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pc_app') THEN
    CREATE ROLE pc_app LOGIN;
  END IF;
END $$;
GRANT authctx_app TO pc_app;

SELECT current_setting('authctx.cache_size') AS cache_size,
       (SELECT capacity >= 100000 FROM authctx._cache_stats()) AS has_capacity;

-- Sessions and keys are inserted directly, as the session module would.
CREATE FUNCTION pc_session(u uuid, t uuid, last_seen interval DEFAULT '0') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE tok authctx.token := authctx._token_new('session');
BEGIN
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, expires_at, last_seen_at)
  VALUES (authctx._token_id(tok), u, t, gen_random_uuid(), authctx._token_verifier(tok),
          clock_timestamp() + interval '1 day', clock_timestamp() - last_seen);
  RETURN tok::text;
END $$;
CREATE FUNCTION pc_key(u uuid, t uuid, scopes text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE tok authctx.token := authctx._token_new('api_key');
BEGIN
  INSERT INTO authctx.api_keys (id, user_id, tenant_id, name, scopes, verifier)
  VALUES (authctx._token_id(tok), u, t, 'pc', scopes, authctx._token_verifier(tok));
  RETURN tok::text;
END $$;
CREATE FUNCTION pc_id(tok text) RETURNS uuid LANGUAGE sql
  AS $$ SELECT authctx._token_id(tok::authctx.token) $$;

-- auth_begin as the application role: the role it yields, or the error.
CREATE FUNCTION pc_auth(tok text, tenant text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE c authctx.context;
BEGIN
  IF tenant IS NULL THEN
    c := auth_begin(tok);
  ELSE
    c := auth_begin(tok, tenant);
  END IF;
  RETURN coalesce(c.role, '(no tenant)');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION pc_auth(text, text) TO pc_app;

-- Counter deltas since the previous call.
CREATE TABLE pc_base AS SELECT * FROM authctx._cache_stats();
CREATE FUNCTION pc_delta() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE r text;
BEGIN
  SELECT format('hits=%s misses=%s member_hits=%s member_misses=%s',
                s.hits - b.hits, s.misses - b.misses,
                s.member_hits - b.member_hits, s.member_misses - b.member_misses)
    INTO r FROM authctx._cache_stats() s, pc_base b;
  DELETE FROM pc_base;
  INSERT INTO pc_base SELECT * FROM authctx._cache_stats();
  RETURN r;
END $$;
GRANT EXECUTE ON FUNCTION pc_delta() TO pc_app;

SELECT authctx.create_tenant('pc-acme') AS acme \gset
SELECT authctx.create_tenant('pc-globex') AS globex \gset
SELECT authctx.create_user('pc-alice@example.com') AS alice \gset
SELECT authctx.create_user('pc-bob@example.com') AS bob \gset
SELECT authctx.create_user('pc-carol@example.com') AS carol \gset
SELECT authctx.create_user('pc-dan@example.com') AS dan \gset
SELECT authctx.create_user('pc-erin@example.com') AS erin \gset
SELECT authctx.create_user('pc-filler@example.com') AS filler \gset
SELECT authctx.add_member('pc-acme', :'alice', 'owner');
SELECT authctx.add_member('pc-globex', :'alice');
SELECT authctx.add_member('pc-acme', :'bob');
SELECT authctx.add_member('pc-acme', :'carol');
SELECT authctx.add_member('pc-acme', :'dan');
SELECT authctx.add_member('pc-acme', :'erin');
SELECT pc_session(:'alice', :'acme') AS s_alice \gset
SELECT pc_session(:'alice', :'acme') AS s_alice2 \gset
SELECT pc_session(:'bob', :'acme') AS s_bob \gset
SELECT pc_session(:'bob', :'acme') AS s_bob2 \gset
SELECT pc_session(:'carol', :'acme') AS s_carol \gset
SELECT pc_session(:'carol', NULL) AS s_carol_notenant \gset
SELECT pc_key(:'alice', :'acme', '{read,deploy}') AS k_alice \gset
SELECT pc_session(:'carol', :'acme', '2 hours') AS s_idle \gset
SELECT pc_session(:'carol', :'acme', '50 minutes') AS s_used \gset
SELECT pc_session(:'dan', :'acme') AS s_dan1 \gset
SELECT pc_session(:'dan', :'acme') AS s_dan2 \gset
SELECT pc_session(:'dan', :'acme') AS s_dan3 \gset
SELECT pc_key(:'dan', :'acme', '{read}') AS k_dan1 \gset
SELECT pc_key(:'dan', :'acme', '{read}') AS k_dan2 \gset
SELECT pc_session(:'erin', :'acme') AS s_erin1 \gset
SELECT pc_session(:'erin', :'acme') AS s_erin2 \gset
SELECT count(pc_session(:'filler', NULL)) AS filler_sessions FROM generate_series(1, 600);
SELECT pc_delta() IS NOT NULL AS reset;

SET ROLE pc_app;

-- 1. The first auth_begin reads the tables and fills; the next ones hit.
SELECT pc_auth(:'s_alice') AS first, pc_delta();
SELECT pc_auth(:'s_alice') AS second, pc_delta();
SELECT pc_auth(:'s_alice') AS third, pc_delta();
SELECT pc_auth(:'s_carol_notenant') AS no_tenant, pc_delta();
SELECT pc_auth(:'s_carol_notenant') AS no_tenant, pc_delta();

-- API keys keep their scopes and tenant through the cache.
SELECT pc_auth(:'k_alice') AS key_miss, pc_delta();
BEGIN;
SELECT pc_auth(:'k_alice') AS key_hit, pc_delta();
SELECT authctx.has_scope('read') AS read, authctx.has_scope('deploy') AS deploy,
       authctx.has_scope('admin') AS admin, (authctx.current()).auth_method;
COMMIT;
-- A key naming another tenant is refused without asking the membership
-- cache (a hit would tell that the key's user belongs to that tenant).
SELECT pc_auth(:'k_alice', 'pc-globex') AS key_elsewhere, pc_delta();

-- A tenant named by the request: the membership cache, by slug or by uuid.
SELECT pc_auth(:'s_alice', 'pc-globex') AS by_slug, pc_delta();
SELECT pc_auth(:'s_alice', 'pc-globex') AS by_slug, pc_delta();
SELECT pc_auth(:'s_alice', :'globex') AS by_uuid, pc_delta();
SELECT pc_auth(:'s_alice', upper(:'globex')) AS by_uuid_upper, pc_delta();
SELECT pc_auth(:'s_bob', 'pc-globex') AS not_member, pc_delta();
SELECT pc_auth(:'s_bob', 'pc-nowhere') AS no_such_tenant, pc_delta();

-- Garbage never reaches the cache or the tables.
SELECT pc_auth('axs_garbage') AS garbage, pc_delta();

-- 2. Revocation: honoured by the very next auth_begin.  The user's other
-- sessions stay cached (a session row pends the slot of its own token, not
-- its user's).
SELECT pc_auth(:'s_alice2') AS before_revoke, pc_auth(:'s_alice2') AS cached, pc_delta();
RESET ROLE;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_alice2');
SET ROLE pc_app;
SELECT pc_auth(:'s_alice2') AS after_revoke, pc_delta();
SELECT pc_auth(:'s_alice') AS other_session, pc_delta();
SELECT pc_auth(:'s_alice') AS other_session, pc_delta();

-- 2b. Per-session invalidation, with two (then three) cached sessions of
-- one user.  Aborted revocations, of one session or of all of them, leave
-- both cached.
SELECT pc_auth(:'s_dan1') AS a, pc_auth(:'s_dan2') AS b,
       pc_auth(:'s_dan1') AS a_cached, pc_auth(:'s_dan2') AS b_cached, pc_delta();
RESET ROLE;
BEGIN;
SELECT authctx.revoke_session(pc_id(:'s_dan1'));
ROLLBACK;
BEGIN;
SELECT authctx.revoke_user_sessions(:'dan');
ROLLBACK;
BEGIN;
SAVEPOINT sp;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE user_id = :'dan';
ROLLBACK TO sp;
COMMIT;
SET ROLE pc_app;
SELECT pc_auth(:'s_dan1') AS a_after_aborts, pc_auth(:'s_dan2') AS b_after_aborts, pc_delta();
-- Revoking A is honoured at once; B is still valid, and still a hit.
RESET ROLE;
SELECT authctx.revoke_session(pc_id(:'s_dan1'));
SET ROLE pc_app;
SELECT pc_auth(:'s_dan1') AS a_revoked, pc_delta();
SELECT pc_auth(:'s_dan2') AS b_still_cached, pc_delta();
-- Revoking all of the user's sessions: every one of them fails at once.
SELECT pc_auth(:'s_dan3') AS c, pc_auth(:'s_dan3') AS c_cached, pc_delta();
RESET ROLE;
SELECT authctx.revoke_user_sessions(:'dan') AS revoked;
SET ROLE pc_app;
SELECT pc_auth(:'s_dan1') AS a, pc_auth(:'s_dan2') AS b, pc_auth(:'s_dan3') AS c, pc_delta();
-- API keys the same: revoking one key leaves the other cached.
SELECT pc_auth(:'k_dan1') AS k1, pc_auth(:'k_dan2') AS k2,
       pc_auth(:'k_dan1') AS k1_cached, pc_auth(:'k_dan2') AS k2_cached, pc_delta();
RESET ROLE;
SELECT authctx.revoke_api_key(pc_id(:'k_dan1'));
SET ROLE pc_app;
SELECT pc_auth(:'k_dan1') AS k1_revoked, pc_delta();
SELECT pc_auth(:'k_dan2') AS k2_still_cached, pc_delta();

-- 3. An aborted revocation leaves the cache valid: still hits.
SELECT pc_auth(:'s_bob') AS bob, pc_auth(:'s_bob') AS bob_cached, pc_delta();
RESET ROLE;
BEGIN;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_bob');
ROLLBACK;
BEGIN;
SAVEPOINT sp;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_bob');
ROLLBACK TO sp;
COMMIT;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS after_aborts, pc_delta();

-- A revocation in a released savepoint commits with its transaction.
SELECT pc_auth(:'s_bob2') AS bob2, pc_auth(:'s_bob2') AS bob2_cached, pc_delta();
RESET ROLE;
BEGIN;
SAVEPOINT sp;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_bob2');
RELEASE sp;
COMMIT;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob2') AS released_revoke, pc_delta();

-- A transaction sees its own uncommitted revocation (the cache is bypassed
-- once the transaction has written), and the others do not.
RESET ROLE;
BEGIN;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_bob');
SET LOCAL ROLE pc_app;
SELECT pc_auth(:'s_bob') AS own_uncommitted_revoke;
ROLLBACK;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS after_rollback, pc_delta();

-- PREPARE TRANSACTION of such a change is refused (nothing would bump the
-- cache at COMMIT PREPARED); the change is rolled back.
RESET ROLE;
BEGIN;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_bob');
PREPARE TRANSACTION 'pc_revoke';
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS not_prepared, pc_delta();

-- 4. Disable and enable the user.  Disabling revokes the user's sessions
-- for good (a stamp on the user's row, which invalidates the user's slot);
-- a session made after the enable is cached again.
RESET ROLE;
SELECT authctx.disable_user(:'bob');
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS disabled, pc_delta();
RESET ROLE;
SELECT authctx.enable_user(:'bob');
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS enabled, pc_delta();
RESET ROLE;
SELECT pc_session(:'bob', :'acme') AS s_bob \gset
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS new_session, pc_auth(:'s_bob') AS cached, pc_delta();

-- 5. Role change: the session's own tenant and a named one.
SELECT pc_auth(:'s_bob', 'pc-acme') AS named, pc_auth(:'s_bob', 'pc-acme') AS cached, pc_delta();
RESET ROLE;
SELECT authctx.set_member_role('pc-acme', :'bob', 'admin');
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS own_tenant, pc_auth(:'s_bob', 'pc-acme') AS named, pc_delta();

-- 6. Membership removal, and adding back.
SELECT pc_auth(:'s_alice', 'pc-globex') AS globex, pc_delta();
RESET ROLE;
SELECT authctx.remove_member('pc-globex', :'alice');
SELECT authctx.remove_member('pc-acme', :'bob');
SET ROLE pc_app;
SELECT pc_auth(:'s_alice', 'pc-globex') AS removed_named, pc_auth(:'s_alice') AS still_acme, pc_delta();
SELECT pc_auth(:'s_bob') AS removed_own, pc_auth(:'s_bob') AS again, pc_delta();
RESET ROLE;
SELECT authctx.add_member('pc-acme', :'bob', 'member');
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS added_back, pc_delta();

-- 7. A password change revokes the user's sessions.
SELECT pc_auth(:'s_alice') AS before_password, pc_delta();
RESET ROLE;
SELECT authctx.set_password(:'alice', 'correct horse battery staple');
SET ROLE pc_app;
SELECT pc_auth(:'s_alice') AS after_password, pc_delta();
SELECT pc_auth(:'k_alice') AS key_survives, pc_delta();

-- 8. Idle timeout: the cache keeps the last-seen time it moves on use; an
-- idle-expired session is never cached.
SELECT pc_auth(:'s_idle') AS idle_expired, pc_auth(:'s_idle') AS again, pc_delta();
SELECT pc_auth(:'s_used') AS used, pc_delta();
RESET ROLE;
SET authctx.session_idle_timeout = '40min';
SET ROLE pc_app;
SELECT pc_auth(:'s_used') AS seen_just_now, pc_delta();
RESET ROLE;
RESET authctx.session_idle_timeout;
SET ROLE pc_app;

-- 9. Expiry is the wall clock's, cache or not.
RESET ROLE;
UPDATE authctx.sessions SET expires_at = clock_timestamp() + interval '1 second'
 WHERE id = pc_id(:'s_carol');
SET ROLE pc_app;
SELECT pc_auth(:'s_carol') AS short_lived, pc_auth(:'s_carol') AS cached, pc_delta();
SELECT pg_sleep(1.2);
SELECT pc_auth(:'s_carol') AS expired, pc_delta();

-- 10. TRUNCATE empties the cache of this database; rolled back, it does not.
SELECT pc_auth(:'k_alice') AS key, pc_auth(:'k_alice') AS cached, pc_delta();
RESET ROLE;
BEGIN;
TRUNCATE authctx.api_keys;
ROLLBACK;
SET ROLE pc_app;
SELECT pc_auth(:'k_alice') AS after_rollback, pc_delta();
RESET ROLE;
TRUNCATE authctx.api_keys;
SET ROLE pc_app;
SELECT pc_auth(:'k_alice') AS after_truncate, pc_delta();

-- 11. A transaction touching more users than the pending list holds
-- (1024 slots) drops the whole database from the cache at commit.
SELECT pc_auth(:'s_bob') AS bob, pc_auth(:'s_bob') AS cached, pc_delta();
RESET ROLE;
WITH u AS (
  INSERT INTO authctx.users (email)
  SELECT 'pc-many-' || i || '@example.com' FROM generate_series(1, 1500) i
  RETURNING id)
INSERT INTO authctx.memberships (tenant_id, user_id, role)
  SELECT :'globex', id, 'member' FROM u;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS after_mass_change, pc_auth(:'s_bob') AS cached, pc_delta();

-- 11b. Bulk revocations do not reach the epoch early.  Once a transaction
-- has pended half the list (512 slots), a session row pends its user's slot
-- instead of its token's: here 600 sessions of another user fill the list
-- first, so erin's revocation pends only erin's user slot.  That is enough
-- for the revoked session; erin's other session misses once; other users
-- stay cached (no epoch).
RESET ROLE;
SELECT authctx.add_member('pc-acme', authctx.create_user('pc-fay@example.com')) IS NOT NULL AS fay,
       authctx.add_member('pc-acme', authctx.create_user('pc-gus@example.com')) IS NOT NULL AS gus;
SELECT pc_session(id, :'acme') AS s_fay FROM authctx.users WHERE email = 'pc-fay@example.com' \gset
SELECT pc_session(id, :'acme') AS s_gus FROM authctx.users WHERE email = 'pc-gus@example.com' \gset
SET ROLE pc_app;
SELECT pc_auth(:'s_erin1') AS e1, pc_auth(:'s_erin2') AS e2,
       pc_auth(:'s_erin1') AS e1_cached, pc_auth(:'s_erin2') AS e2_cached,
       pc_auth(:'s_bob') AS bob, pc_auth(:'s_fay') AS fay,
       pc_auth(:'s_gus') AS gus, pc_delta();
RESET ROLE;
BEGIN;
SELECT authctx.revoke_user_sessions(:'filler') AS filler_revoked;
UPDATE authctx.sessions SET revoked_at = clock_timestamp() WHERE id = pc_id(:'s_erin1');
COMMIT;
SET ROLE pc_app;
SELECT pc_auth(:'s_erin1') AS e1_revoked, pc_delta();
SELECT pc_auth(:'s_erin2') AS e2_user_slot, pc_auth(:'s_erin2') AS e2_cached, pc_delta();
SELECT pc_auth(:'s_bob') AS bob_cached, pc_auth(:'s_fay') AS fay_cached,
       pc_auth(:'s_gus') AS gus_cached;
-- An epoch would make all three miss.  One of them may miss without one:
-- the commit stamped some 500 of the 131,072 slots, and a session whose
-- token or user slot is among them (about 1% each) is refilled once.
RESET ROLE;
SELECT s.hits - b.hits >= 2 AS others_stay_cached FROM authctx._cache_stats() s, pc_base b;
SELECT pc_delta() IS NOT NULL AS counters_reset;
SET ROLE pc_app;

-- 12. Each database is its own world.  A token cached here never
-- authenticates in another database, and reinstalling the extension there
-- forgets what it cached before.
SELECT pc_auth(:'s_bob') AS cached_here, pc_delta();
RESET ROLE;
SELECT current_database() AS db1 \gset
CREATE DATABASE pc_cache_other;
\c pc_cache_other
SET client_min_messages = warning;
CREATE EXTENSION authctx;
CREATE FUNCTION pc_auth(tok text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce((auth_begin(tok)).role, '(no tenant)');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION pc_auth(text) TO pc_app;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS other_database;
RESET ROLE;
-- the same session id and verifier, copied by hand: the tables decide
INSERT INTO authctx.tenants (slug) VALUES ('pc-other') RETURNING id AS other_tenant \gset
INSERT INTO authctx.users (email) VALUES ('pc-dave@example.com') RETURNING id AS dave \gset
INSERT INTO authctx.memberships VALUES (:'other_tenant', :'dave', 'viewer');
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, expires_at)
  SELECT authctx._token_id(:'s_bob'::authctx.token), :'dave', :'other_tenant',
         gen_random_uuid(), authctx._token_verifier(:'s_bob'::authctx.token),
         clock_timestamp() + interval '1 hour';
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS copied_row, pc_auth(:'s_bob') AS cached;
RESET ROLE;
DROP EXTENSION authctx CASCADE;
CREATE EXTENSION authctx;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS after_reinstall;
RESET ROLE;
\c :db1
SET client_min_messages = warning;
DROP DATABASE pc_cache_other;
SET ROLE pc_app;
SELECT pc_auth(:'s_bob') AS back_home;

-- 13. The internals are not for PUBLIC.
SELECT has_function_privilege('pc_app', 'authctx._cache_stats()', 'execute') AS stats,
       has_function_privilege('pc_app', 'authctx._cache_flush()', 'execute') AS flush;

RESET ROLE;
DROP FUNCTION pc_session(uuid, uuid, interval), pc_key(uuid, uuid, text[]), pc_id(text),
  pc_auth(text, text), pc_delta();
DROP TABLE pc_base;
-- leave nothing behind for the tests that follow
DELETE FROM authctx.audit_log
 WHERE user_id IN (SELECT id FROM authctx.users WHERE email LIKE 'pc-%');
DELETE FROM authctx.users WHERE email LIKE 'pc-%';
DELETE FROM authctx.tenants WHERE slug LIKE 'pc-%';
SELECT count(*) AS left_behind FROM authctx.sessions s
  LEFT JOIN authctx.users u ON u.id = s.user_id WHERE u.email LIKE 'pc-%';
