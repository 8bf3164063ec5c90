-- ---------------------------------------------------------------------------
-- 50 sessions, refresh tokens, API keys: create, expire, revoke, rotate,
-- clean up.  auth_begin (request.c) validates tokens on the hot path; the
-- functions here manage their lifecycle.
--
-- Storage.  A token's public id is the row's primary key; only its verifier
-- (authctx._token_verifier: keyed BLAKE2b of kind, id and secret) is
-- stored, never the token or its secret.  Verifiers are compared with
-- authctx._verifier_equal, which blinds both sides before comparing.
--
-- Time.  Expiry is judged by the wall clock (clock_timestamp()), never by
-- now(), which is the start of the caller's transaction.  A session has an
-- absolute lifetime (authctx.session_lifetime) and an idle timeout
-- (authctx.session_idle_timeout, 0 = none) judged from last_seen_at, which
-- is written off the request path when it is a tenth of the idle timeout
-- old (authctx.last_seen_interval with the idle timeout off; src/seen.c),
-- see authctx._session_live.
--
-- The liveness rule, in one place.  A session is live when its row exists,
-- the presented secret matches its verifier, revoked_at is NULL, it has not
-- expired and has not been idle too long (by the wall clock), its user
-- exists and is not disabled, and it is not revoked by its user's stamp
-- (authctx._revoked_by_user: issued at or before
-- users.sessions_revoked_before, and not of the one login family
-- users.sessions_revoked_except).  auth_begin applies it in C
-- (src/session.c: SessionLookup reads it, SessionIsLive judges it) and
-- every SQL path here through authctx._session_live (the clock part) and
-- authctx._revoked_by_user (the user's stamp).
-- A refresh token is usable on the same terms, with "not spent" instead of
-- the idle timeout (within authctx.refresh_reuse_grace a spent one still
-- is, see Refresh) and, when its login had a tenant, the user still a
-- member of it.  An API key is live when not revoked, not expired and its
-- user is not disabled; the stamp does not apply to API keys.
--
-- What revokes what (docs/lifecycle.md has the table):
--   * logout(token), revoke_session(id), reuse of a spent refresh token:
--     the whole login family (every session and refresh token descended
--     from one login), physically (revoked_at).
--   * revoke_user_sessions, set_password (except the caller's own family
--     when called from the user's own session), disable_user: every
--     session and refresh token of the user issued until then, by the
--     user's stamp (the rule above, effective whatever the order of
--     commits) and physically as far as the revoker's snapshot sees.
--     enable_user brings none of them back.  API keys are not revoked; a
--     disabled user's keys are refused while the user stays disabled.
--   * remove_member: the user's sessions and refresh tokens of that tenant
--     stop working (auth_begin 42501, refresh 28000) while the user is not
--     a member; nothing is revoked.
--
-- Revocation wins over a concurrent login or refresh, whatever the order of
-- commits.  Every path that creates sessions or refresh tokens (login,
-- login_webauthn through _issue_session, create_session, refresh) locks the
-- user's row FOR SHARE before it reads the credential it checks, and every
-- user-wide revoker (set_password, revoke_user_sessions, disable_user)
-- locks it FOR NO KEY UPDATE, then reads the clock for its stamp in a later
-- statement and writes it to that row.  So either the creator's lock came
-- first, its rows carry an earlier time and the stamp revokes them (even a
-- revoker in REPEATABLE READ, whose snapshot cannot see those rows); or the
-- revoker's came first, and the creator, once it has the lock, reads the
-- new password and the stamp (READ COMMITTED) or fails with 40001 because
-- the row changed after its snapshot (REPEATABLE READ, SERIALIZABLE):
-- either way no session comes out of a credential that was already
-- replaced, disabled or revoked.  A creator never issues a row dated at or
-- before its user's stamp (authctx._issue_time), and a revoker dates its
-- stamp no earlier than the newest row of the user it can see, so a wall
-- clock that steps back does not undo this (in READ COMMITTED; a revoker in
-- REPEATABLE READ relies on the clock not stepping back between a
-- creator's commit and its own stamp).  The membership of the session's
-- tenant is locked FOR SHARE the same way, against remove_member.
--
-- Lock order.  Every function here takes its locks in this order and never
-- the other way round, so none of them can deadlock with another:
--   1. the account lock: a transaction advisory lock on a keyed hash of the
--      normalised email (authctx._lock_account), taken for unknown emails
--      exactly as for known ones, by the worker transaction that decides a
--      password attempt (authctx._login_attempt, see Login attempts) and
--      by nothing else;
--   2. the user's row in authctx.users: FOR SHARE by login, login_webauthn,
--      _issue_session, create_session, refresh, logout, revoke_session,
--      _revoke_family; FOR NO KEY UPDATE by _revoke_user_sessions
--      (set_password, revoke_user_sessions, disable_user), which excludes
--      all of the former for that user while it runs;
--   3. the membership row of the session's tenant (FOR SHARE);
--   4. the login family: a transaction advisory lock on the family id
--      (authctx._lock_family), by refresh (both paths), logout,
--      revoke_session and _revoke_family, so one family changes in one
--      transaction at a time;
--   5. refresh_tokens rows of the family, then 6. sessions rows.
-- _revoke_user_sessions, holding 2 exclusively, goes straight to 5 and 6.
-- The cleanup and last-seen writers lock with SKIP LOCKED and never wait;
-- nobody waits for cleanup either (see Cleanup).  Lock waits are bounded:
-- the functions that can wait run with lock_timeout = 10s, and a wait that
-- times out fails the call (55P03): nothing is half revoked, and no
-- session is issued.
-- A login holds 2 and 3 while a worker decides its attempt in another
-- transaction, which takes 1 and, of the caller's rows, at most a KEY
-- SHARE lock on the user's row (the foreign key check of a login_throttle
-- insert).  KEY SHARE conflicts only with FOR UPDATE: neither with the
-- caller's FOR SHARE nor with a revoker's FOR NO KEY UPDATE queued behind
-- it, and a KEY SHARE request never queues behind a waiter (heap_lock_tuple
-- takes the tuple's lock only to sleep).  So the worker never waits for its
-- caller, a wait the deadlock detector could not see (src/worker.c).
--
-- Login attempts.  Each password attempt is decided by a background worker
-- in a READ COMMITTED transaction of its own (authctx._autonomous_call,
-- kind login_attempt, which runs authctx._login_attempt): it takes the
-- account lock, reads the lockout state, verifies the password against the
-- latest committed hash (a dummy verification, the same work, for an
-- unknown email, a user without a password or a locked account), records
-- a failure (counted toward the lockout, audited login_failed with its
-- reason) or clears the streak, commits, and returns the verdict.  So the
-- decision never rests on the caller's snapshot, which in REPEATABLE READ
-- or SERIALIZABLE may be older than the failures the worker committed for
-- the caller's own earlier attempts (each behind a savepoint), and no
-- verdict exists that is not recorded: the worker commits it before the
-- caller learns it.  The caller holds the user's row FOR SHARE and the
-- membership before it asks (lock order, 2 and 3), so set_password,
-- disable_user, revoke_user_sessions and remove_member cannot commit
-- between the worker's verification and the session's creation; it passes
-- the user it locked, and a verdict for any other user (the email moved
-- meanwhile) is a failure ("changed", not counted).  The session is issued
-- in the caller's transaction (_issue_session): a success whose caller
-- then rolls back leaves no session, and a cleared streak.  What the
-- worker sees is what has committed: a user created, a password set or a
-- membership added earlier in the caller's still-open transaction does not
-- exist for the attempt.  The worker start is the price: a login took
-- 190-250 ms more than verify_password alone (the same argon2 work) on
-- the loaded two-core test machine (test/t/028_login_attempts.pl prints
-- it).  The password travels in the task's shared memory segment,
-- which the worker wipes as soon as it has read it (src/worker.c), never
-- in a command line, activity string or message.  The lockout settings of
-- the caller travel with it; the password hashing parameters
-- (authctx.password_*) are the server's, as the worker sees them.
--
-- Login failures.  Unknown email, wrong password, disabled user, a tenant
-- the user does not belong to and a locked account all raise SQLSTATE
-- 28P01 with the same message from the same RAISE, after the same amount
-- of password hashing.  Only audit_log, readable by authctx_admin,
-- records which it was.  When no worker can decide the attempt (no worker
-- slot free within 2 s, the worker failed, a standby), login refuses with
-- the same 28P01 before any password is verified: nothing is verified,
-- counted, issued or cleared, and the server log says why (LOG).  So
-- filling the worker slots (parallel queries can) stops password logins
-- until a slot is free, rather than letting guesses through uncounted.  In
-- a read-only transaction (a standby, BEGIN READ ONLY), where no session
-- can be issued, login refuses (28P01) before it asks the worker.
--
-- Lockout: bounded exponential back-off per account (the counting and the
-- back-off: authctx._login_failure in 40_identity.sql, next to login_throttle).
--   * Only a wrong password for an existing account counts.  After
--     authctx.lockout_threshold consecutive failures (default 5) the account
--     is locked for authctx.lockout_base_delay (30s), doubling with each
--     further failure up to authctx.lockout_max_delay (15min).
--   * While locked, every password login of the account is refused, the
--     right password too; the attempt still costs a (dummy) argon2 hash, so
--     the lock is not visible in the timing.  Attempts during the lock are
--     audited but NOT counted, so hammering a locked account does not extend
--     the lock.
--   * A successful verification clears the streak (committed by the worker,
--     even if the caller's transaction then rolls back); a streak whose last
--     failure is older than twice lockout_max_delay is forgotten.
--   * Password attempts for one email are serialised by the account lock
--     (lock order, 1), held by the deciding worker from before it reads the
--     lockout state until it has committed the outcome, so parallel guesses
--     cannot all slip in before the first failure is counted.  Unknown
--     emails take the same lock, so parallel attempts cost the same whether
--     or not the email exists.
-- Why this is not a denial-of-service lever: an attacker who knows an email
-- can delay that one account's password logins by at most lockout_max_delay
-- after each failure he spends, and must keep spending them (each one
-- audited) to keep it so; the lock never becomes permanent, needs no admin
-- to lift, is per account (never per tenant or global), and leaves existing
-- sessions, refresh tokens, API keys and passkey logins untouched.  What an
-- attacker gains against the account itself is capped at roughly one guess
-- per lockout_max_delay once the back-off has grown.
--
-- Tenant.  login/create_session: with a tenant argument the user must be a
-- member (login: 28P01 like any other failure, so login does not reveal
-- memberships or tenants; create_session: 42501, unknown tenant 42704);
-- without one, the session takes the user's only membership, or no tenant
-- when there are several or none (auth_begin then names one).  refresh
-- refuses (28000) a family whose tenant the user no longer belongs to.  API
-- keys always name their tenant.
--
-- Management errors follow identity's: unknown user or tenant 42704, bad
-- argument 22023; in addition a disabled user is 55000 and a user who is
-- not a member of the named tenant 42501.
--
-- Refresh.  login issues a session and a refresh token in a new family.
-- refresh spends the refresh token (it works once), ends the session it was
-- issued with, and issues a new pair in the same family.  Presenting a
-- spent token again revokes the whole family (every session and refresh
-- token descended from that login) through the autonomous worker and
-- raises 28000; within authctx.refresh_reuse_grace of the first spend it
-- instead issues another pair, for clients that race themselves.
-- Concurrency:
--   * A refresh holds the family lock while it spends (and, in the grace
--     path, while it re-spends: a real UPDATE of the spent row, so that a
--     revoker in REPEATABLE READ that cannot see the new rows fails with
--     40001 on that row instead of missing them).  Of two concurrent
--     refreshes one spends, the other waits for the lock, then finds the
--     token spent and takes the reuse path.  Without grace exactly one wins.
--   * The locks a refresh takes before spending (user, membership, family)
--     are taken in a subtransaction that is rolled back when the token turns
--     out to be spent, so the reuse path calls the worker holding none of
--     them: the worker's _revoke_family needs them, and would wait for us
--     while we wait for it (see src/worker.c).  A token spent earlier in the
--     caller's own transaction (refresh_tokens.spent_xid, a 64-bit xid that
--     wraparound cannot alias) is refused without calling the worker: our
--     error undoes that spend anyway.  A caller whose transaction already
--     holds the family's lock (it refreshed or logged out another token of
--     the family earlier in the same transaction) is refused with 55000: the
--     family cannot be revoked durably from inside that transaction.
--   * Family revocation holds the family lock, so no refresh adds rows
--     while it runs: one pass revokes everything.
-- When the worker cannot revoke the family of a reused token (no worker
-- slot free within 2 s, the worker failed, a standby), refresh raises the
-- same 28000 as for any invalid token, and THE FAMILY STAYS ALIVE: nothing
-- in the caller's transaction can outlive the error it raises, and the
-- refusal must not tell a spent token from a bad one (55000 would).  The
-- reuse is not forgotten silently: the server log gets a LOG line naming
-- the family (never the token), for an operator to revoke it
-- (revoke_session on any of its sessions), and the spent token stays
-- spent, so presenting it again once a slot is free revokes the family.
-- Nothing is spent by a refused reuse.  Keeping worker slots free
-- (max_worker_processes above max_parallel_workers and other extensions'
-- workers) is what makes this case impossible.
--
-- Logout.  logout(token) revokes the token's whole login family whatever
-- state the session is in (live, idle, expired, refreshed away, revoked),
-- and is idempotent as RFC 7009 asks: a token whose session is already
-- revoked, expired, unknown or whose secret does not match returns without
-- error (and without revoking anything when the secret does not match).
-- Anything that is not a well-formed session token (NULL, garbage, a bad
-- checksum, a refresh token or API key) is 22P02.
--
-- Cleanup.  authctx.cleanup() deletes revoked and expired rows a slice at
-- a time (64 heap blocks, a few thousand rows, per statement, by ctid,
-- FOR UPDATE SKIP LOCKED), so it never waits for a row lock, reads each
-- table once, and each statement stays short.  It runs in its caller's
-- transaction and keeps the locks of the rows it deleted until that
-- commits, so it deletes only rows that no safety write will ever touch:
-- rows revoked, expired or idle for longer than the margin (one hour plus
-- authctx.last_seen_interval, authctx._cleanup_margin()), while every
-- revocation leaves alone rows dead for longer than half of it, and skips
-- (SKIP LOCKED) the long-idle sessions among the rest that someone holds.
-- A session row stays while its login family has a usable refresh token:
-- logout, revoke_session and list_sessions reach the family through it,
-- and a refresh copies its metadata.  Spent refresh tokens are kept until
-- they expire: they are what detects reuse.  Lockout rows are not deleted
-- (one per account at most; a streak forgets itself after a quiet period,
-- and deleting a row could make a lockout write wait for the run).
-- ---------------------------------------------------------------------------

-- tables ----------------------------------------------------------------------
-- fillfactor 80 on sessions and API keys: last_seen_at / last_used_at (the
-- background worker, about once a minute per active session) and revoked_at
-- are updated in place, and none of them is indexed, so with free room on
-- the page these are HOT updates that touch no index.
CREATE TABLE authctx.sessions (
  id            uuid PRIMARY KEY,     -- the session token's public id
  user_id       uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  tenant_id     uuid REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  family_id     uuid NOT NULL,        -- login family (refresh rotation)
  verifier      bytea NOT NULL,       -- keyed BLAKE2b of the token; never the secret
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  last_seen_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at    timestamptz NOT NULL, -- absolute lifetime
  revoked_at    timestamptz,
  metadata      jsonb NOT NULL DEFAULT '{}',
  amr           text[] NOT NULL DEFAULT '{}' -- how the login authenticated (authctx.amr())
) WITH (fillfactor = 80);
CREATE INDEX sessions_user_idx ON authctx.sessions (user_id);
CREATE INDEX sessions_family_idx ON authctx.sessions (family_id);
CREATE INDEX sessions_expires_idx ON authctx.sessions (expires_at);
COMMENT ON TABLE authctx.sessions IS 'sessions; references user ids only, never copies user data';

CREATE TABLE authctx.refresh_tokens (
  id          uuid PRIMARY KEY,       -- the refresh token's public id
  family_id   uuid NOT NULL,
  session_id  uuid NOT NULL,          -- session issued together with it
  user_id     uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  tenant_id   uuid REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  parent_id   uuid,                   -- refresh token it was rotated from
  verifier    bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at  timestamptz NOT NULL,
  spent_at    timestamptz,
  revoked_at  timestamptz,
  spent_xid   xid8                    -- top-level transaction that spent it
);
CREATE INDEX refresh_tokens_family_idx ON authctx.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON authctx.refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON authctx.refresh_tokens (expires_at);
COMMENT ON TABLE authctx.refresh_tokens IS 'single-use refresh tokens; reuse revokes the family';

CREATE TABLE authctx.api_keys (
  id            uuid PRIMARY KEY,     -- the key's public id
  user_id       uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  tenant_id     uuid NOT NULL REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  name          text NOT NULL,
  scopes        text[] NOT NULL DEFAULT '{}',
  verifier      bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz
) WITH (fillfactor = 80);
CREATE INDEX api_keys_user_idx ON authctx.api_keys (user_id);
COMMENT ON TABLE authctx.api_keys IS 'API keys with scopes, bound to one tenant';

REVOKE ALL ON TABLE authctx.sessions, authctx.refresh_tokens, authctx.api_keys FROM PUBLIC;

-- internal helpers ----------------------------------------------------------

CREATE FUNCTION authctx._setting(name text) RETURNS interval
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- The settings are defined by the library.  Before it is loaded in this
  -- backend, a value from postgresql.conf is an unparsed placeholder without
  -- its unit, so make sure it is loaded (any C function of it will do).
  PERFORM authctx._token_kind(authctx._token_new('session'));
  RETURN current_setting(name)::interval;
END
$$;
COMMENT ON FUNCTION authctx._setting(text) IS 'internal: a duration setting of authctx as an interval';

-- Comparing the raw verifiers with = would leak through its timing how long
-- a prefix matched.  Hashing both sides with a fresh random key first makes
-- the compared values unpredictable to the caller: the timing then says
-- nothing about the stored verifier.
CREATE FUNCTION authctx._verifier_equal(a bytea, b bytea) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a IS NOT NULL AND b IS NOT NULL
         AND sha256(k.key || a) = sha256(k.key || b)
    FROM (SELECT uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) AS key) k;
$$;
COMMENT ON FUNCTION authctx._verifier_equal(bytea, bytea) IS 'internal: blinded (timing-safe) comparison of two token verifiers';

-- A token of the wanted kind, or NULL for anything else (NULL, malformed,
-- bad checksum, other kind).  The input is never echoed.
CREATE FUNCTION authctx._parse_token(input text, kind text) RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok authctx.token;
BEGIN
  IF input IS NULL THEN
    RETURN NULL;
  END IF;
  BEGIN
    v_tok := input::authctx.token;
  EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
  END;
  IF authctx._token_kind(v_tok) <> kind THEN
    RETURN NULL;
  END IF;
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx._parse_token(text, text) IS 'internal: parse a token of one kind; NULL when it is not one';

-- The user-wide part of the liveness rule: is a session or refresh token
-- issued at p_created in family p_family revoked by its user's stamp
-- (users.sessions_revoked_before / sessions_revoked_except)?  The C twin is
-- SessionRevokedByUser() in src/session.c.  A plain SQL function, so that
-- it is inlined where it is used.
CREATE FUNCTION authctx._revoked_by_user(p_created timestamptz, p_family uuid,
                                         p_before timestamptz, p_except uuid)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT p_before IS NOT NULL
     AND (p_created IS NULL OR p_created OPERATOR(pg_catalog.<=) p_before)
     AND (p_except IS NULL OR p_family IS NULL OR p_family OPERATOR(pg_catalog.<>) p_except);
$$;
COMMENT ON FUNCTION authctx._revoked_by_user(timestamptz, uuid, timestamptz, uuid) IS
  'internal: whether a session or refresh token (issue time, family) is revoked by its user''s revocation stamp';

-- The clock part of the liveness rule of a session, in one place for every
-- SQL path: at p_at it has not expired and is not idle for the idle timeout
-- p_idle ('0': no idle timeout).  last_seen_at is recorded only when it is
-- a tenth of p_idle old (sliding last-seen), so it lags the last use by
-- less than p_idle / 10: a session is idle when its recorded time is
-- p_idle + p_idle / 10 old or more.  So one used within p_idle is never
-- refused, and one unused for 1.1 x p_idle always is.  The C twin is
-- SessionIsLive() in src/session.c (the tenth is AUTHCTX_SEEN_FRACTION).
-- A plain SQL function, so that it is inlined where it is used.
CREATE FUNCTION authctx._session_live(p_expires_at timestamptz, p_last_seen_at timestamptz,
                                      p_at timestamptz, p_idle interval)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT p_expires_at OPERATOR(pg_catalog.>) p_at
     AND (p_idle OPERATOR(pg_catalog.=) interval '0'
          OR (p_last_seen_at OPERATOR(pg_catalog.+) p_idle
              OPERATOR(pg_catalog.+) (p_idle OPERATOR(pg_catalog./) 10::double precision))
             OPERATOR(pg_catalog.>) p_at);
$$;
COMMENT ON FUNCTION authctx._session_live(timestamptz, timestamptz, timestamptz, interval) IS
  'internal: whether a session (expiry, last seen) is neither expired nor idle at a time, for an idle timeout (recorded last-seen at least a tenth of it older than the last use)';

-- The time a new session or refresh token of a user is issued at: the wall
-- clock, but always after the user's stamp, so that a clock that stepped
-- back never issues a row its user's last revocation already revokes.  The
-- caller holds the user's row (FOR SHARE).
CREATE FUNCTION authctx._issue_time(p_user_id uuid) RETURNS timestamptz
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(max(greatest(clock_timestamp(), u.sessions_revoked_before + interval '1 microsecond')),
                  clock_timestamp())
    FROM authctx.users u WHERE u.id = p_user_id;
$$;
COMMENT ON FUNCTION authctx._issue_time(uuid) IS
  'internal: issue time of a new session or refresh token: the wall clock, and after the user''s revocation stamp';

-- How long a row stays after it is revoked, expired or idle before cleanup()
-- deletes it (last-seen times arrive late).  Revocations leave alone rows
-- dead for more than half of it, so that they never wait for a cleanup run.
CREATE FUNCTION authctx._cleanup_margin() RETURNS interval
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN interval '1 hour' + authctx._setting('authctx.last_seen_interval');
END
$$;
COMMENT ON FUNCTION authctx._cleanup_margin() IS
  'internal: how long revoked, expired and idle rows stay before cleanup() deletes them';

-- The advisory lock key of a login family: the first 64 bits of its id (a
-- random uuid).
CREATE FUNCTION authctx._family_lock_key(p_family_id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT ('x' OPERATOR(pg_catalog.||)
          pg_catalog.translate(pg_catalog.left(p_family_id::text, 18), '-', ''))::bit(64)::bigint;
$$;
COMMENT ON FUNCTION authctx._family_lock_key(uuid) IS 'internal: advisory lock key of a login family';

-- Lock a login family for the rest of the transaction (lock order, 4).
CREATE FUNCTION authctx._lock_family(p_family_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(authctx._family_lock_key(p_family_id));
END
$$;
COMMENT ON FUNCTION authctx._lock_family(uuid) IS
  'internal: take the transaction lock of a login family (lock order: user, membership, family, refresh tokens, sessions)';

-- Does this transaction already hold a family's lock?
CREATE FUNCTION authctx._holds_family_lock(p_family_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l, (SELECT authctx._family_lock_key(p_family_id) AS k) f
     WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
       AND l.classid = ((f.k >> 32) & 4294967295)::oid
       AND l.objid = (f.k & 4294967295)::oid
       AND l.objsubid = 1);
$$;
COMMENT ON FUNCTION authctx._holds_family_lock(uuid) IS 'internal: whether this transaction holds a login family''s lock';

-- Revoke the rows of one login family, for a caller that holds the locks
-- (the family's, or its user's exclusively).  Rows dead for longer than half
-- the cleanup margin are left alone (expiry is final, and cleanup() may be
-- deleting them: we must not wait for it); long-idle sessions, which
-- cleanup() may be deleting too, are revoked unless someone holds them.
-- live: how many of the revoked sessions were live at p_at.
CREATE FUNCTION authctx._revoke_family_rows(p_family_id uuid, p_at timestamptz,
                                            OUT sessions integer, OUT tokens integer,
                                            OUT live integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_half  interval := authctx._cleanup_margin() / 2;
  v_idle  interval := authctx._setting('authctx.session_idle_timeout');
  v_idled integer;
BEGIN
  UPDATE authctx.refresh_tokens rt SET revoked_at = p_at
   WHERE rt.family_id = p_family_id AND rt.revoked_at IS NULL
     AND rt.expires_at > p_at - v_half;
  GET DIAGNOSTICS tokens = ROW_COUNT;
  WITH r AS (
    UPDATE authctx.sessions s SET revoked_at = p_at
     WHERE s.family_id = p_family_id AND s.revoked_at IS NULL
       AND authctx._session_live(s.expires_at, s.last_seen_at, p_at - v_half, v_idle)
    RETURNING s.expires_at, s.last_seen_at)
  SELECT count(*),
         count(*) FILTER (WHERE authctx._session_live(r.expires_at, r.last_seen_at, p_at, v_idle))
    INTO sessions, live
    FROM r;
  IF v_idle > '0' THEN
    WITH r AS (
      UPDATE authctx.sessions s SET revoked_at = p_at
       WHERE s.ctid = ANY (ARRAY(
               SELECT i.ctid FROM authctx.sessions i
                WHERE i.family_id = p_family_id AND i.revoked_at IS NULL
                  AND i.expires_at > p_at - v_half
                  AND NOT authctx._session_live(i.expires_at, i.last_seen_at, p_at - v_half, v_idle)
                  FOR NO KEY UPDATE OF i SKIP LOCKED))
      RETURNING 1)
    SELECT count(*) INTO v_idled FROM r;
    sessions := sessions + v_idled;
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family_rows(uuid, timestamptz) IS
  'internal: revoke a login family''s rows for a caller holding its locks; returns sessions, tokens and live sessions revoked';

-- Revoke every session and refresh token of a login family, taking the
-- locks in order (user, family).  With the family lock held no refresh can
-- add rows meanwhile, so one pass revokes everything; a revoker in
-- REPEATABLE READ that cannot see rows a refresh committed after its
-- snapshot fails with 40001 on the token that refresh spent (or re-spent).
CREATE FUNCTION authctx._revoke_family(p_family_id uuid, p_at timestamptz,
                                       OUT sessions integer, OUT tokens integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user uuid;
BEGIN
  sessions := 0;
  tokens := 0;
  SELECT rt.user_id INTO v_user FROM authctx.refresh_tokens rt
   WHERE rt.family_id = p_family_id LIMIT 1;
  IF v_user IS NULL THEN
    SELECT s.user_id INTO v_user FROM authctx.sessions s
     WHERE s.family_id = p_family_id LIMIT 1;
  END IF;
  IF v_user IS NULL THEN
    RETURN;
  END IF;
  PERFORM 1 FROM authctx.users u WHERE u.id = v_user FOR SHARE;
  PERFORM authctx._lock_family(p_family_id);
  SELECT r.sessions, r.tokens INTO sessions, tokens
    FROM authctx._revoke_family_rows(p_family_id, p_at) r;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family(uuid, timestamptz) IS
  'internal: revoke a login family (sessions and refresh tokens); returns how many of each it revoked';

-- A spent refresh token presented again (kind refresh_reuse, in the
-- worker's transaction; see Refresh in the header): revoke every session
-- and refresh token of its family and audit refresh_reuse.  p_record:
-- {family_id, user_id, tenant_id, session_id, token_id, db_role}.
-- Returns {sessions_revoked}.
CREATE FUNCTION authctx._refresh_reuse(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now      timestamptz := clock_timestamp();
  v_family   uuid := (p_record ->> 'family_id')::uuid;
  v_sessions integer;
BEGIN
  IF v_family IS NULL THEN
    RAISE EXCEPTION 'refresh_reuse record without a family' USING ERRCODE = '22023';
  END IF;
  SELECT f.sessions INTO v_sessions FROM authctx._revoke_family(v_family, v_now) f;
  PERFORM authctx._audit('refresh_reuse',
                         (p_record ->> 'user_id')::uuid,
                         (p_record ->> 'tenant_id')::uuid,
                         (p_record ->> 'session_id')::uuid,
                         jsonb_build_object(
                           'family_id', v_family,
                           'refresh_token_id', p_record ->> 'token_id',
                           'sessions_revoked', v_sessions),
                         (p_record ->> 'db_role')::name, v_now);
  RETURN jsonb_build_object('sessions_revoked', v_sessions);
END
$$;
COMMENT ON FUNCTION authctx._refresh_reuse(jsonb) IS
  'internal: revoke the login family of a reused refresh token and audit refresh_reuse (in the worker''s transaction); returns sessions_revoked';

-- Last-seen (sessions) and last-used (API keys) times, moved forward only
-- (kind seen, in the worker's transaction; the notes come from the
-- last-seen writer, src/seen.c).  p_record: {entries: [{k: "s"|"k", id,
-- t}]}, t in microseconds since the Unix epoch.  The payload is parsed
-- once per kind.  The write never waits for a row lock: a row that anyone
-- else holds (a revocation, cleanup, another batch) is skipped and keeps
-- its time, which is a hint at most an interval behind, so this
-- transaction can take part in no deadlock.  Each row is locked through
-- its primary key (the locking subquery in LATERAL keeps the plan a nested
-- loop of index probes; a join would let the planner hash the whole table)
-- and then updated by its ctid.  Returns {}.
CREATE FUNCTION authctx._note_seen(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kind text;
  v_ids  uuid[];
  v_ats  timestamptz[];
BEGIN
  FOREACH v_kind IN ARRAY ARRAY['s', 'k'] LOOP
    SELECT coalesce(array_agg(n.id ORDER BY n.id), '{}'),
           coalesce(array_agg(n.at ORDER BY n.id), '{}')
      INTO v_ids, v_ats
      FROM (SELECT (e ->> 'id')::uuid AS id,
                   max(to_timestamp((e ->> 't')::numeric / 1000000)) AS at
              FROM jsonb_array_elements(p_record -> 'entries') e
             WHERE e ->> 'k' = v_kind
             GROUP BY 1) n;
    CONTINUE WHEN cardinality(v_ids) = 0;
    IF v_kind = 's' THEN
      WITH l AS (
        SELECT x.tid, m.at
          FROM unnest(v_ids, v_ats) m(id, at)
          CROSS JOIN LATERAL (
            SELECT s.ctid AS tid
              FROM authctx.sessions s
             WHERE s.id = m.id AND s.last_seen_at < m.at
               FOR NO KEY UPDATE SKIP LOCKED) x)
      UPDATE authctx.sessions s
         SET last_seen_at = l.at
        FROM l
       WHERE s.ctid = l.tid;
    ELSE
      WITH l AS (
        SELECT x.tid, m.at
          FROM unnest(v_ids, v_ats) m(id, at)
          CROSS JOIN LATERAL (
            SELECT k.ctid AS tid
              FROM authctx.api_keys k
             WHERE k.id = m.id AND (k.last_used_at IS NULL OR k.last_used_at < m.at)
               FOR NO KEY UPDATE SKIP LOCKED) x)
      UPDATE authctx.api_keys k
         SET last_used_at = l.at
        FROM l
       WHERE k.ctid = l.tid;
    END IF;
  END LOOP;
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._note_seen(jsonb) IS
  'internal: move sessions'' last_seen_at and API keys'' last_used_at forward from a batch of notes, skipping locked rows (in the worker''s transaction)';

-- Revoke a user's sessions and refresh tokens, except (optionally) one
-- session's login family; returns how many live sessions were revoked
-- (0 for an unknown user).  Locks the user's row exclusively (lock order,
-- 2), then stamps it: every session and refresh token issued until the
-- stamp is revoked by the liveness rule, including those of a login or
-- refresh that committed after our snapshot; the rows we can see are also
-- revoked one by one (in REPEATABLE READ, those of a family that changed
-- after our snapshot are left to the stamp).  Used by revoke_user_sessions,
-- and by identity's set_password (p_except: the caller's own session) and
-- disable_user.
CREATE FUNCTION authctx._revoke_user_sessions(p_user_id uuid, p_except uuid, p_reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz;
  v_stamp  timestamptz;
  v_keep   uuid;
  v_family uuid;
  v_live   integer;
  v_total  integer := 0;
BEGIN
  PERFORM 1 FROM authctx.users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  IF p_except IS NOT NULL THEN
    SELECT s.family_id INTO v_keep FROM authctx.sessions s
     WHERE s.id = p_except AND s.user_id = p_user_id;
  END IF;
  -- The clock is read only now that we hold the row: whoever issued rows
  -- before us has committed them, with earlier times.  Nor is the stamp
  -- earlier than the newest of them we can see (a clock that stepped back).
  v_now := clock_timestamp();
  v_stamp := greatest(v_now,
                      (SELECT max(s.created_at) FROM authctx.sessions s WHERE s.user_id = p_user_id),
                      (SELECT max(rt.created_at) FROM authctx.refresh_tokens rt WHERE rt.user_id = p_user_id));
  UPDATE authctx.users u
     SET sessions_revoked_before = v_stamp, sessions_revoked_except = v_keep
   WHERE u.id = p_user_id;
  FOR v_family IN
    SELECT s.family_id FROM authctx.sessions s
     WHERE s.user_id = p_user_id AND s.revoked_at IS NULL
    UNION
    SELECT rt.family_id FROM authctx.refresh_tokens rt
     WHERE rt.user_id = p_user_id AND rt.revoked_at IS NULL
  LOOP
    CONTINUE WHEN v_family IS NOT DISTINCT FROM v_keep;
    IF current_setting('transaction_isolation') = 'read committed' THEN
      SELECT r.live INTO v_live FROM authctx._revoke_family_rows(v_family, v_now) r;
    ELSE
      -- A login or refresh that committed after our snapshot changed this
      -- family (40001 on its rows).  What it issued is revoked by the stamp
      -- all the same; only its rows stay unmarked.
      BEGIN
        SELECT r.live INTO v_live FROM authctx._revoke_family_rows(v_family, v_now) r;
      EXCEPTION WHEN serialization_failure THEN
        v_live := 0;
      END;
    END IF;
    v_total := v_total + v_live;
  END LOOP;
  IF v_total > 0 THEN
    PERFORM authctx._audit('session_revoked', p_user_id, NULL, NULL,
                           jsonb_build_object('reason', p_reason, 'sessions', v_total));
  END IF;
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx._revoke_user_sessions(uuid, uuid, text) IS
  'internal: revoke a user''s sessions and refresh tokens (stamp and rows) except one session''s family; returns live sessions revoked';

-- Is the user a member of the tenant?  The membership row is locked FOR
-- SHARE (lock order, 3), so that a concurrent remove_member either waits
-- for what the caller issues (and that stops working with the membership)
-- or is seen.
CREATE FUNCTION authctx._lock_membership(p_tenant_id uuid, p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM 1 FROM authctx.memberships m
    WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id FOR SHARE;
  RETURN FOUND;
END
$$;
COMMENT ON FUNCTION authctx._lock_membership(uuid, uuid) IS
  'internal: whether the user is a member of the tenant, the membership locked FOR SHARE';

-- The tenant a new session or key of a user gets, for the management
-- functions: the named tenant (unknown: 42704; the user must be a member:
-- 42501), else the user's only membership, else none (p_required: 22023).
-- The memberships read are locked FOR SHARE (lock order, 3), so that a
-- concurrent remove_member either waits for the new session or is seen.
CREATE FUNCTION authctx._member_tenant(p_user_id uuid, p_tenant text, p_required boolean)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tenant  uuid;
  v_tenants uuid[];
BEGIN
  IF p_tenant IS NULL THEN
    IF p_required THEN
      RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(x.tenant_id) INTO v_tenants
      FROM (SELECT m.tenant_id FROM authctx.memberships m
             WHERE m.user_id = p_user_id FOR SHARE) x;
    RETURN CASE WHEN cardinality(v_tenants) = 1 THEN v_tenants[1] END;
  END IF;
  v_tenant := authctx._require_tenant(p_tenant);
  IF NOT authctx._lock_membership(v_tenant, p_user_id) THEN
    RAISE EXCEPTION 'user is not a member of this tenant' USING ERRCODE = '42501';
  END IF;
  RETURN v_tenant;
END
$$;
COMMENT ON FUNCTION authctx._member_tenant(uuid, text, boolean) IS 'internal: tenant for a new session or API key, checked for membership';

-- The user for the management functions: must exist (42704, identity's
-- rule) and be enabled (55000); its row is locked FOR SHARE (lock order, 2).
CREATE FUNCTION authctx._enabled_user(p_user_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(p_user_id);
  PERFORM 1 FROM authctx.users u
    WHERE u.id = p_user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user is disabled' USING ERRCODE = '55000';
  END IF;
  RETURN p_user_id;
END
$$;
COMMENT ON FUNCTION authctx._enabled_user(uuid) IS 'internal: check that a user exists (42704) and is enabled (55000), and lock it';

-- A new session and refresh token in a family; stores only verifiers.  The
-- caller holds the user's row (FOR SHARE).
CREATE FUNCTION authctx._new_pair(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                  p_parent_id uuid, p_metadata jsonb, p_amr text[])
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_session authctx.token := authctx._token_new('session');
  v_refresh authctx.token := authctx._token_new('refresh');
  v_now     timestamptz := authctx._issue_time(p_user_id);
  v_expires timestamptz := v_now + authctx._setting('authctx.session_lifetime');
  v_result  authctx.login_result;
BEGIN
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata, amr)
  VALUES (authctx._token_id(v_session), p_user_id, p_tenant_id, p_family_id,
          authctx._token_verifier(v_session), v_now, v_now, v_expires,
          coalesce(p_metadata, '{}'::jsonb), coalesce(p_amr, '{}'::text[]));
  INSERT INTO authctx.refresh_tokens (id, family_id, session_id, user_id, tenant_id,
                                      parent_id, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_refresh), p_family_id, authctx._token_id(v_session),
          p_user_id, p_tenant_id, p_parent_id, authctx._token_verifier(v_refresh),
          v_now, v_now + authctx._setting('authctx.refresh_lifetime'));
  v_result := ROW(v_session, v_refresh, authctx._token_id(v_session), p_tenant_id, v_expires);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb, text[]) IS 'internal: issue a session and refresh token in a family, with the login''s authentication methods';

-- Start a login: a session and a refresh token in a new family, and a
-- login audit event.  For callers that have already authenticated the user
-- (login, login_webauthn).  Locks the user's row and the membership FOR
-- SHARE (lock order) and checks again, under the locks, that the user is
-- enabled and a member of p_tenant_id (NULL: no tenant): 28P01 otherwise.
CREATE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_family uuid := gen_random_uuid();
  v_result authctx.login_result;
BEGIN
  PERFORM 1 FROM authctx.users u
    WHERE u.id = _issue_session.user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  IF _issue_session.tenant_id IS NOT NULL
     AND NOT authctx._lock_membership(_issue_session.tenant_id, _issue_session.user_id) THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the session's amr (RFC 8176 names), published by auth_begin as authctx.amr()
  v_result := authctx._new_pair(_issue_session.user_id, _issue_session.tenant_id, v_family,
                                NULL, _issue_session.metadata,
                                CASE _issue_session.method
                                  WHEN 'password' THEN ARRAY['pwd']
                                  WHEN 'webauthn' THEN ARRAY['webauthn']
                                  WHEN 'magic_link' THEN ARRAY['otp_email']
                                  ELSE '{}'::text[] END);
  PERFORM authctx._audit('login', _issue_session.user_id, _issue_session.tenant_id,
                         v_result.session_id,
                         jsonb_build_object('method', _issue_session.method, 'family_id', v_family));
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._issue_session(uuid, uuid, text, jsonb) IS
  'internal: create a session and refresh token in a new family for an authenticated user, audit login';

-- The locks a refresh takes before it spends a token (lock order: user,
-- membership, family) and the checks that need them: the user exists, is
-- enabled and has not revoked the token with a stamp, and the login's
-- tenant (if any) still counts the user as a member.  28000 otherwise.
CREATE FUNCTION authctx._refresh_lock(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                      p_created timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user authctx.users;
BEGIN
  SELECT * INTO v_user FROM authctx.users u WHERE u.id = p_user_id FOR SHARE;
  IF NOT FOUND OR v_user.disabled_at IS NOT NULL
     OR authctx._revoked_by_user(p_created, p_family_id, v_user.sessions_revoked_before,
                                 v_user.sessions_revoked_except) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  IF p_tenant_id IS NOT NULL AND NOT authctx._lock_membership(p_tenant_id, p_user_id) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._lock_family(p_family_id);
END
$$;
COMMENT ON FUNCTION authctx._refresh_lock(uuid, uuid, uuid, timestamptz) IS
  'internal: lock user, membership and family for a refresh, and check that the family may still refresh (28000)';

-- The new pair of a refresh (a spend, or a grace re-spend) and its audit
-- record.  The metadata and the login's amr come from the session issued
-- with the spent token (cleanup() keeps it while the family can refresh),
-- else from the family's newest session.
CREATE FUNCTION authctx._refresh_pair(p_token authctx.refresh_tokens, p_grace boolean)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_meta   jsonb;
  v_amr    text[];
  v_result authctx.login_result;
BEGIN
  SELECT s.metadata, s.amr INTO v_meta, v_amr FROM authctx.sessions s
   WHERE s.family_id = p_token.family_id
   ORDER BY s.id = p_token.session_id DESC, s.created_at DESC
   LIMIT 1;
  v_result := authctx._new_pair(p_token.user_id, p_token.tenant_id, p_token.family_id,
                                p_token.id, v_meta, v_amr);
  PERFORM authctx._audit('refresh', p_token.user_id, p_token.tenant_id, v_result.session_id,
                         CASE WHEN p_grace
                              THEN jsonb_build_object('family_id', p_token.family_id, 'grace', true)
                              ELSE jsonb_build_object('family_id', p_token.family_id) END);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._refresh_pair(authctx.refresh_tokens, boolean) IS
  'internal: issue the new pair of a refresh in the spent token''s family, with its metadata, and audit it';

-- login attempts -------------------------------------------------------------

-- The caller's lockout settings, for the worker that records a failure: it
-- is another backend, and sees neither SET nor ALTER ROLE ... SET values.
CREATE FUNCTION authctx._lockout_settings() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- _setting first: it loads the library, which defines the settings
  v_base interval := authctx._setting('authctx.lockout_base_delay');
  v_max  interval := authctx._setting('authctx.lockout_max_delay');
BEGIN
  RETURN jsonb_build_object(
    'threshold', current_setting('authctx.lockout_threshold')::integer,
    'base_delay', extract(epoch FROM v_base),
    'max_delay', extract(epoch FROM v_max));
END
$$;
COMMENT ON FUNCTION authctx._lockout_settings() IS
  'internal: the caller''s lockout settings (threshold, base_delay, max_delay in seconds), for the worker';

-- One password attempt, decided in the worker's own READ COMMITTED
-- transaction (kind login_attempt; see Login attempts in the header).
-- p_attempt: {email, password, user_id (the user the caller locked),
-- member (the caller found the user a member of the tenant asked for),
-- method, db_role, threshold, base_delay, max_delay}.  Returns {user_id}
-- when the login may go on, else the failure's {failures, locked_until}.
-- Every statement after the account lock reads the latest committed
-- state: the outcome of the attempt before ours on this email.
CREATE FUNCTION authctx._login_attempt(p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_email    text := p_attempt ->> 'email';
  v_user     uuid;
  v_disabled timestamptz;
  v_locked   timestamptz;
  v_verified uuid;
  v_reason   text;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a login attempt must be decided in a READ COMMITTED transaction'
      USING ERRCODE = '25000';
  END IF;
  -- one attempt per email at a time, known or not (lock order, 1)
  PERFORM authctx._lock_account(v_email);
  SELECT u.id, u.disabled_at INTO v_user, v_disabled
    FROM authctx.users u WHERE authctx._email_key(u.email) = authctx._email_key(v_email);
  IF v_user IS NOT NULL THEN
    SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;

  IF v_locked > clock_timestamp() THEN
    PERFORM authctx._password_dummy_verify(p_attempt ->> 'password');
    v_reason := 'locked';
  ELSE
    -- hashes for an unknown email too
    v_verified := authctx.verify_password(v_email, p_attempt ->> 'password');
    IF v_user IS NULL THEN
      v_reason := 'unknown_user';
    ELSIF v_disabled IS NOT NULL THEN
      v_reason := 'disabled';
    ELSIF v_verified IS DISTINCT FROM v_user THEN
      v_reason := 'bad_password';
    ELSIF v_user IS DISTINCT FROM (p_attempt ->> 'user_id')::uuid THEN
      -- the caller locked another user (or none): the email moved meanwhile
      v_reason := 'changed';
    ELSIF NOT coalesce((p_attempt ->> 'member')::boolean, false) THEN
      v_reason := 'not_member';
    END IF;
  END IF;

  IF v_reason IS NULL THEN
    -- the streak ends here, whatever the caller's transaction does next
    DELETE FROM authctx.login_throttle t WHERE t.user_id = v_user;
    RETURN jsonb_build_object('user_id', v_user);
  END IF;
  RETURN authctx._login_failure(v_user, v_reason, v_reason = 'bad_password', p_attempt);
END
$$;
COMMENT ON FUNCTION authctx._login_attempt(jsonb) IS
  'internal: decide one password attempt in the worker''s transaction (account lock, lockout state, verification, failure recorded or streak cleared); {user_id} on success';

-- The tenant of a login's session, locked FOR SHARE (lock order, 3) before
-- the attempt is decided: the tenant named (member: whether the user
-- belongs to it; an unknown tenant is not one), else the user's only
-- membership, else none.
CREATE FUNCTION authctx._login_tenant(p_user_id uuid, p_tenant text,
                                      OUT tenant_id uuid, OUT member boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  member := true;
  IF p_tenant IS NULL THEN
    tenant_id := authctx._member_tenant(p_user_id, NULL, false);
  ELSE
    tenant_id := authctx._resolve_tenant(p_tenant);
    member := tenant_id IS NOT NULL AND authctx._lock_membership(tenant_id, p_user_id);
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._login_tenant(uuid, text) IS
  'internal: the tenant of a login''s session and whether the user is a member, the membership locked FOR SHARE';

-- Have the worker decide an authentication attempt (kinds login_attempt,
-- webauthn_attempt) and return its verdict; NULL when no worker could
-- (no slot free within 2 s, it failed, a standby): then nothing was
-- verified or recorded, and the caller refuses the attempt as a failure.
-- Why goes to the server log (LOG), naming the kind, never the payload.
CREATE FUNCTION authctx._attempt_in_worker(p_kind text, p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_message text;
  v_detail  text;
BEGIN
  RETURN authctx._autonomous_call(p_kind, p_attempt);
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
  RAISE LOG 'authentication attempt refused unverified: %', v_message
    USING DETAIL = v_detail;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION authctx._attempt_in_worker(text, jsonb) IS
  'internal: the worker''s verdict on an authentication attempt, or NULL (logged) when no worker could decide it';

-- public functions ----------------------------------------------------------

CREATE FUNCTION authctx.login(email text, password text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key     bytea := authctx._email_key(login.email);
  v_user    uuid;
  v_tenant  uuid;
  v_member  boolean := false;
  v_verdict jsonb;
BEGIN
  -- A read-only transaction (a standby, BEGIN READ ONLY) can issue nothing:
  -- refuse before any password is tried.
  IF current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- The user's row FOR SHARE (lock order, 2) and the membership (3) before
  -- the password is verified: a set_password, disable_user,
  -- revoke_user_sessions or remove_member either committed before (READ
  -- COMMITTED reads its result; REPEATABLE READ fails with 40001) or waits
  -- for us and then revokes what we issue.
  IF v_key IS NOT NULL THEN
    SELECT u.id INTO v_user
      FROM authctx.users u WHERE authctx._email_key(u.email) = v_key
       FOR SHARE;
  END IF;
  IF v_user IS NOT NULL THEN
    SELECT t.tenant_id, t.member INTO v_tenant, v_member
      FROM authctx._login_tenant(v_user, login.tenant) t;
  END IF;
  -- The worker decides and records the attempt in a transaction of its
  -- own, reading the latest committed state (see Login attempts).  An
  -- email without a key is nobody's; a password over the hard cap
  -- (identity.c, 4096 bytes) can be nobody's either: neither is shipped.
  v_verdict := authctx._attempt_in_worker('login_attempt', jsonb_build_object(
    'email', CASE WHEN v_key IS NOT NULL THEN login.email END,
    'password', CASE WHEN octet_length(login.password) <= 4096 THEN login.password END,
    'user_id', v_user,
    'member', v_member,
    'method', 'password',
    'db_role', session_user) || authctx._lockout_settings());
  IF v_user IS NULL OR (v_verdict ->> 'user_id')::uuid IS DISTINCT FROM v_user THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'password', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login(text, text, text) IS
  'password login: a session and a refresh token; each attempt is decided, counted and audited by a background worker in a transaction of its own; any failure, or no worker to decide, raises 28P01 with one generic message';

CREATE FUNCTION authctx.refresh(refresh_token text) RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok    authctx.token := authctx._parse_token(refresh_token, 'refresh');
  v_id     uuid;
  v_now    timestamptz := clock_timestamp();
  v_row    authctx.refresh_tokens;
  v_spent  boolean;
  v_grace  interval;
  v_message text;
  v_detail  text;
BEGIN
  IF v_tok IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  v_id := authctx._token_id(v_tok);

  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.revoked_at IS NOT NULL
     OR v_row.expires_at <= v_now THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Lock (user, membership, family) and spend.  Holding the family lock,
  -- nobody else changes the token: the UPDATE sees its latest state (or, in
  -- REPEATABLE READ, fails with 40001 when it changed after our snapshot).
  -- When it is already spent, the subtransaction is rolled back: that
  -- releases every lock taken here, and the reuse path below holds none.
  BEGIN
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = v_now, spent_xid = pg_current_xact_id()
     WHERE rt.id = v_id AND rt.spent_at IS NULL AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'refresh token not spendable' USING ERRCODE = 'AX001';
    END IF;
    v_spent := true;
  EXCEPTION WHEN SQLSTATE 'AX001' THEN
    v_spent := false;
  END;
  IF v_spent THEN
    -- rotation: the session issued with this refresh token ends here
    UPDATE authctx.sessions s SET revoked_at = v_now
     WHERE s.id = v_row.session_id AND s.revoked_at IS NULL;
    RETURN authctx._refresh_pair(v_row, false);
  END IF;

  -- Spent (or revoked) by someone else.  We hold no lock on the family.
  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  v_now := clock_timestamp();
  IF NOT FOUND OR v_row.revoked_at IS NOT NULL OR v_row.spent_at IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Spent earlier in this very transaction: that spend dies with the error
  -- we raise, and the worker would wait for our locks.  Not a reuse.
  IF v_row.spent_xid = pg_current_xact_id_if_assigned() THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  v_grace := authctx._setting('authctx.refresh_reuse_grace');
  IF v_grace > '0' AND v_now - v_row.spent_at <= v_grace THEN
    -- A client racing itself.  Lock as a spend does and re-spend the token:
    -- a real update, which a concurrent family revocation either waits for
    -- (then revokes our rows too) or has already made impossible.
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = rt.spent_at
     WHERE rt.id = v_id AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
    END IF;
    RETURN authctx._refresh_pair(v_row, true);
  END IF;

  -- Reuse of a spent token: revoke the family in a transaction of its own.
  -- Not from a transaction that holds the family's lock already (it
  -- refreshed or logged out in this family earlier): the worker would wait
  -- for it, and whatever it revoked itself dies with our error.
  IF authctx._holds_family_lock(v_row.family_id) THEN
    RAISE EXCEPTION 'cannot revoke a login family from a transaction that holds its lock'
      USING ERRCODE = '55000',
            DETAIL = 'A spent refresh token was presented again in a transaction that already changed its login family.',
            HINT = 'Present each refresh token in a transaction of its own.';
  END IF;
  -- When no worker can (see Refresh in the header), the family stays
  -- alive: refused as any invalid token, and logged for an operator.
  BEGIN
    PERFORM authctx._autonomous_call('refresh_reuse', jsonb_build_object(
      'family_id', v_row.family_id,
      'user_id', v_row.user_id,
      'tenant_id', v_row.tenant_id,
      'session_id', v_row.session_id,
      'token_id', v_id,
      'db_role', session_user));
  EXCEPTION WHEN object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    RAISE LOG 'reuse of a spent refresh token not recorded, login family % not revoked: %',
              v_row.family_id, v_message
      USING DETAIL = v_detail,
            HINT = 'Revoke the family with authctx.revoke_session on any of its sessions.';
  END;
  RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
END
$$;
COMMENT ON FUNCTION authctx.refresh(text) IS
  'spend a refresh token for a new session and refresh token; a spent token presented again revokes its whole family (28000)';

CREATE FUNCTION authctx.logout(session_token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok  authctx.token;
  v_now  timestamptz := clock_timestamp();
  v_row  authctx.sessions;
  v_rev  record;
BEGIN
  -- 22P02 for anything that is not a well-formed session token; the input
  -- is never echoed
  IF session_token IS NOT NULL THEN
    v_tok := session_token::authctx.token;
  END IF;
  IF v_tok IS NULL OR authctx._token_kind(v_tok) <> 'session' THEN
    RAISE EXCEPTION 'invalid input syntax for type authctx.token'
      USING ERRCODE = '22P02', DETAIL = 'logout takes a session token (axs_).';
  END IF;
  SELECT * INTO v_row FROM authctx.sessions s WHERE s.id = authctx._token_id(v_tok);
  -- unknown, or not its secret: nothing to revoke, and no error (RFC 7009)
  IF v_row.id IS NULL
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok)) THEN
    RETURN;
  END IF;
  -- the whole login ends, whatever state this session is in
  PERFORM 1 FROM authctx.users u WHERE u.id = v_row.user_id FOR SHARE;
  PERFORM authctx._lock_family(v_row.family_id);
  SELECT * INTO v_rev FROM authctx._revoke_family_rows(v_row.family_id, v_now) r;
  IF v_rev.sessions > 0 OR v_rev.tokens > 0 THEN
    PERFORM authctx._audit('logout', v_row.user_id, v_row.tenant_id, v_row.id,
                           jsonb_build_object('family_id', v_row.family_id));
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.logout(text) IS
  'revoke the login family of a session token (its sessions and refresh tokens) in whatever state; idempotent (RFC 7009), 22P02 for anything but a session token';

CREATE FUNCTION authctx.create_session(user_id uuid, tenant text DEFAULT NULL,
                                       ttl interval DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok    authctx.token := authctx._token_new('session');
  v_user   uuid := authctx._enabled_user(create_session.user_id);
  v_tenant uuid := authctx._member_tenant(v_user, create_session.tenant, false);
  v_ttl    interval := coalesce(create_session.ttl, authctx._setting('authctx.session_lifetime'));
  v_now    timestamptz := authctx._issue_time(v_user);
  v_family uuid := gen_random_uuid();
BEGIN
  IF v_ttl <= '0' THEN
    RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = '22023';
  END IF;
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata)
  VALUES (authctx._token_id(v_tok), v_user, v_tenant, v_family, authctx._token_verifier(v_tok),
          v_now, v_now, v_now + v_ttl, coalesce(create_session.metadata, '{}'::jsonb));
  PERFORM authctx._audit('session_created', v_user, v_tenant, authctx._token_id(v_tok),
                         jsonb_build_object('family_id', v_family));
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx.create_session(uuid, text, interval, jsonb) IS
  'create a session for a user (no password, no refresh token): for trusted back ends and tests';

CREATE FUNCTION authctx.revoke_session(session_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_family uuid;
  v_user   uuid;
  v_tenant uuid;
  v_rev    record;
BEGIN
  SELECT s.family_id, s.user_id, s.tenant_id INTO v_family, v_user, v_tenant
    FROM authctx.sessions s WHERE s.id = revoke_session.session_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  -- The whole login goes: its refresh tokens must not bring it back, and a
  -- refresh may already have replaced this session by a newer one.
  PERFORM 1 FROM authctx.users u WHERE u.id = v_user FOR SHARE;
  PERFORM authctx._lock_family(v_family);
  SELECT * INTO v_rev FROM authctx._revoke_family_rows(v_family, v_now) r;
  IF v_rev.sessions = 0 AND v_rev.tokens = 0 THEN
    RETURN false;
  END IF;
  PERFORM authctx._audit('session_revoked', v_user, v_tenant, revoke_session.session_id,
                         jsonb_build_object('reason', 'revoke_session', 'family_id', v_family,
                                            'sessions', v_rev.sessions));
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.revoke_session(uuid) IS
  'revoke a session with its whole login family (sessions and refresh tokens); true when this call revoked anything';

CREATE FUNCTION authctx.revoke_user_sessions(user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
  SELECT authctx._revoke_user_sessions(revoke_user_sessions.user_id, NULL, 'revoke_user_sessions');
$$;
COMMENT ON FUNCTION authctx.revoke_user_sessions(uuid) IS
  'revoke every session and refresh token of a user issued until now, including those of logins and refreshes still in flight; returns how many live sessions were revoked';

-- Live sessions, and every login family that can still be refreshed (by
-- the session issued with its unspent refresh token, live or not).
CREATE FUNCTION authctx.list_sessions(user_id uuid)
RETURNS TABLE (session_id uuid, tenant_id uuid, created_at timestamptz,
               last_seen_at timestamptz, expires_at timestamptz, metadata jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.id, s.tenant_id, s.created_at, s.last_seen_at, s.expires_at, s.metadata
    FROM authctx.users u
    JOIN authctx.sessions s ON s.user_id = u.id,
         (SELECT clock_timestamp() AS now,
                 authctx._setting('authctx.session_idle_timeout') AS idle) c
   WHERE u.id = list_sessions.user_id
     AND u.disabled_at IS NULL
     AND NOT authctx._revoked_by_user(s.created_at, s.family_id,
                                      u.sessions_revoked_before, u.sessions_revoked_except)
     AND ((s.revoked_at IS NULL
           AND authctx._session_live(s.expires_at, s.last_seen_at, c.now, c.idle))
          OR EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                      WHERE rt.family_id = s.family_id AND rt.session_id = s.id
                        AND rt.revoked_at IS NULL AND rt.spent_at IS NULL
                        AND rt.expires_at > c.now))
   ORDER BY s.created_at, s.id;
$$;
COMMENT ON FUNCTION authctx.list_sessions(uuid) IS
  'a user''s live sessions, and the session of every login family that can still be refreshed; without secrets';

-- The scope rule lives in C (session.c), where auth_begin checks the stored
-- scopes again: 1 to 128 characters from A-Z a-z 0-9 _ . : / * + -, at most
-- 64 scopes, at most 1023 bytes joined.
CREATE FUNCTION authctx._check_scopes(scopes text[]) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_check_scopes'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._check_scopes(text[]) IS
  'internal: raises 22023 unless the array is a valid list of API key scopes';
REVOKE ALL ON FUNCTION authctx._check_scopes(text[]) FROM PUBLIC;

CREATE FUNCTION authctx.create_api_key(user_id uuid, tenant text, name text,
                                       scopes text[] DEFAULT '{}',
                                       expires_at timestamptz DEFAULT NULL)
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok    authctx.token := authctx._token_new('api_key');
  v_user   uuid := authctx._enabled_user(create_api_key.user_id);
  v_tenant uuid := authctx._member_tenant(v_user, create_api_key.tenant, true);
  v_scopes text[] := coalesce(create_api_key.scopes, '{}');
BEGIN
  IF coalesce(btrim(create_api_key.name), '') = '' THEN
    RAISE EXCEPTION 'an API key needs a name' USING ERRCODE = '22023';
  END IF;
  PERFORM authctx._check_scopes(v_scopes);
  IF create_api_key.expires_at <= clock_timestamp() THEN
    RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023';
  END IF;
  INSERT INTO authctx.api_keys (id, user_id, tenant_id, name, scopes, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_tok), v_user, v_tenant, create_api_key.name, v_scopes,
          authctx._token_verifier(v_tok), clock_timestamp(), create_api_key.expires_at);
  PERFORM authctx._audit('api_key_created', v_user, v_tenant, authctx._token_id(v_tok),
                         jsonb_build_object('name', create_api_key.name, 'scopes', to_jsonb(v_scopes)));
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx.create_api_key(uuid, text, text, text[], timestamptz) IS
  'create an API key for a user in a tenant (the user must be a member), with scopes and an optional expiry';

CREATE FUNCTION authctx.list_api_keys(user_id uuid)
RETURNS TABLE (key_id uuid, tenant_id uuid, name text, scopes text[],
               created_at timestamptz, expires_at timestamptz, last_used_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT k.id, k.tenant_id, k.name, k.scopes, k.created_at, k.expires_at, k.last_used_at
    FROM authctx.api_keys k
   WHERE k.user_id = list_api_keys.user_id
     AND k.revoked_at IS NULL
     AND (k.expires_at IS NULL OR k.expires_at > clock_timestamp())
   ORDER BY k.created_at, k.id;
$$;
COMMENT ON FUNCTION authctx.list_api_keys(uuid) IS 'a user''s live API keys (not revoked, not expired), without secrets';

CREATE FUNCTION authctx.revoke_api_key(key_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user   uuid;
  v_tenant uuid;
BEGIN
  UPDATE authctx.api_keys k SET revoked_at = clock_timestamp()
   WHERE k.id = revoke_api_key.key_id AND k.revoked_at IS NULL
  RETURNING k.user_id, k.tenant_id INTO v_user, v_tenant;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM authctx._audit('api_key_revoked', v_user, v_tenant, revoke_api_key.key_id, '{}'::jsonb);
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.revoke_api_key(uuid) IS 'revoke an API key; true when this call revoked it';

-- cleanup -------------------------------------------------------------------

-- Delete the rows of one table that match a condition, a slice of the
-- table per statement: 64 heap blocks (a few thousand rows) read by a TID
-- range scan, so the whole run reads the table once, in physical order;
-- the matching rows are locked FOR UPDATE SKIP LOCKED (never waiting for
-- anyone) and deleted by ctid.  Rows added behind the table's end while we
-- run are new, hence live.  p_condition is fixed text from cleanup()
-- below, over alias t and parameters $1 (now), $2 (idle timeout),
-- $3 (margin); $4 is unused (it was the lockout window when cleanup
-- still deleted login_throttle rows).
CREATE FUNCTION authctx._delete_in_batches(p_table regclass, p_condition text, p_now timestamptz,
                                           p_idle interval, p_margin interval, p_window interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_step    constant integer := 64;
  v_blocks  bigint := pg_relation_size(p_table) / current_setting('block_size')::integer;
  v_sql     text;
  v_deleted bigint;
  v_total   bigint := 0;
BEGIN
  v_sql := format($sql$
    WITH gone AS (
      DELETE FROM %1$s d
       WHERE d.ctid = ANY (ARRAY(
               SELECT t.ctid FROM %1$s t
                WHERE t.ctid >= $5 AND t.ctid < $6 AND (%2$s)
                  FOR UPDATE OF t SKIP LOCKED))
      RETURNING 1)
    SELECT count(*) FROM gone
  $sql$, p_table, p_condition);
  FOR v_block IN 0 .. v_blocks BY v_step LOOP
    EXECUTE v_sql INTO v_deleted
      USING p_now, p_idle, p_margin, p_window,
            format('(%s,0)', v_block)::tid, format('(%s,0)', v_block + v_step)::tid;
    v_total := v_total + v_deleted;
  END LOOP;
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx._delete_in_batches(regclass, text, timestamptz, interval, interval, interval) IS
  'internal: sliced, lock-skipping delete used by cleanup()';


CREATE FUNCTION authctx.cleanup() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_idle   interval := authctx._setting('authctx.session_idle_timeout');
  -- rows stay a little past their end: last-seen times arrive late, and
  -- revocations leave rows dead for more than half of it alone
  v_margin interval := authctx._cleanup_margin();
  v_total  bigint := 0;
BEGIN
  -- a session row stays while its login family can still be refreshed
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$(t.revoked_at < $1 - $3
        OR NOT authctx._session_live(t.expires_at, t.last_seen_at, $1 - $3, $2))
       AND NOT EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                        WHERE rt.family_id = t.family_id AND rt.revoked_at IS NULL
                          AND rt.spent_at IS NULL AND rt.expires_at > $1)$c$,
    v_now, v_idle, v_margin, NULL);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  -- one-time tokens (68_flows.sql): dead once expired, spent or revoked
  v_total := v_total + authctx._delete_in_batches(
    'authctx.one_time_tokens',
    $c$t.expires_at < $1 OR t.spent_at IS NOT NULL OR t.revoked_at IS NOT NULL$c$,
    v_now, v_idle, v_margin, NULL);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys, expired WebAuthn challenges and dead one-time tokens in small batches; returns rows removed';

-- privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._setting(text), authctx._verifier_equal(bytea, bytea),
  authctx._parse_token(text, text),
  authctx._revoked_by_user(timestamptz, uuid, timestamptz, uuid),
  authctx._session_live(timestamptz, timestamptz, timestamptz, interval), authctx._issue_time(uuid),
  authctx._cleanup_margin(), authctx._family_lock_key(uuid), authctx._lock_family(uuid),
  authctx._holds_family_lock(uuid), authctx._revoke_family_rows(uuid, timestamptz),
  authctx._revoke_family(uuid, timestamptz), authctx._refresh_reuse(jsonb),
  authctx._note_seen(jsonb), authctx._lock_membership(uuid, uuid),
  authctx._revoke_user_sessions(uuid, uuid, text), authctx._member_tenant(uuid, text, boolean),
  authctx._enabled_user(uuid), authctx._new_pair(uuid, uuid, uuid, uuid, jsonb, text[]),
  authctx._issue_session(uuid, uuid, text, jsonb),
  authctx._refresh_lock(uuid, uuid, uuid, timestamptz),
  authctx._refresh_pair(authctx.refresh_tokens, boolean),
  authctx._lockout_settings(),
  authctx._login_attempt(jsonb), authctx._login_tenant(uuid, text),
  authctx._attempt_in_worker(text, jsonb),
  authctx._delete_in_batches(regclass, text, timestamptz, interval, interval, interval),
  authctx.login(text, text, text), authctx.refresh(text), authctx.logout(text),
  authctx.create_session(uuid, text, interval, jsonb), authctx.revoke_session(uuid),
  authctx.revoke_user_sessions(uuid), authctx.list_sessions(uuid),
  authctx.create_api_key(uuid, text, text, text[], timestamptz), authctx.list_api_keys(uuid),
  authctx.revoke_api_key(uuid), authctx.cleanup()
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
  authctx.login(text, text, text), authctx.refresh(text), authctx.logout(text)
TO authctx_app;

GRANT EXECUTE ON FUNCTION
  authctx.create_session(uuid, text, interval, jsonb), authctx.revoke_session(uuid),
  authctx.revoke_user_sessions(uuid), authctx.list_sessions(uuid),
  authctx.create_api_key(uuid, text, text, text[], timestamptz), authctx.list_api_keys(uuid),
  authctx.revoke_api_key(uuid), authctx.cleanup()
TO authctx_manager;
