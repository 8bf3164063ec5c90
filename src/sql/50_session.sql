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
-- is written off the request path with a granularity of
-- authctx.last_seen_interval (src/worker.c).
--
-- Login failures.  Unknown email, wrong password, disabled user, a tenant
-- the user does not belong to and a locked account all raise SQLSTATE
-- 28P01 with the same message from the same RAISE, after the same amount
-- of password hashing (a dummy verification where there is nothing to
-- verify).  Only audit_log, readable by authctx_admin, records which it
-- was.  Before raising, the failure is written by a background worker in a
-- transaction of its own (authctx._autonomous), so the caller's rollback
-- cannot erase it.
--
-- Lockout: bounded exponential back-off per account.
--   * Only a wrong password for an existing account counts.  After
--     authctx.lockout_threshold consecutive failures (default 5) the account
--     is locked for authctx.lockout_base_delay (30s), doubling with each
--     further failure up to authctx.lockout_max_delay (15min).
--   * While locked, every password login of the account is refused, the
--     right password too; the attempt still costs a (dummy) argon2 hash, so
--     the lock is not visible in the timing.  Attempts during the lock are
--     audited but NOT counted, so hammering a locked account does not extend
--     the lock.
--   * A successful login clears the streak; a streak whose last failure is
--     older than twice lockout_max_delay is forgotten.
--   * Logins of one account are serialised by a transaction advisory lock
--     while the password is checked, so parallel guesses cannot all slip in
--     before the first failure is counted.
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
-- when there are several or none (auth_begin then names one).  API keys
-- always name their tenant.
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
--   * Spending is UPDATE ... WHERE spent_at IS NULL AND revoked_at IS NULL:
--     of two concurrent refreshes one updates the row, the other waits for
--     it, re-checks, matches nothing and takes the reuse path.  Without
--     grace exactly one wins.
--   * The spending UPDATE runs in a subtransaction that is rolled back when
--     it matched nothing (re-checking a concurrently updated row locks it
--     even when the check then fails), so the reuse path calls the worker
--     holding no lock on the family: the worker would otherwise wait for us
--     while we wait for it (see src/worker.c).  A token spent earlier in
--     the caller's own transaction is refused without calling the worker:
--     our error undoes that spend anyway.
--   * Every row of a family is created by a transaction that holds a lock
--     on an unrevoked refresh token of the family (the one it spends, or
--     locks in the grace path); family revocation (_revoke_family) repeats
--     its UPDATEs until a pass changes nothing, so it also catches rows
--     committed by a refresh it had to wait for.
--
-- Cleanup.  authctx.cleanup() deletes revoked and expired rows a slice at
-- a time (64 heap blocks, a few thousand rows, per statement, by ctid,
-- FOR UPDATE SKIP LOCKED), so it never waits for a row lock, reads each
-- table once, and each statement stays short; concurrent logins only
-- insert new rows and never touch the rows it deletes.  Spent
-- refresh tokens are kept until they expire: they are what detects reuse.
-- ---------------------------------------------------------------------------

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

-- True when a row version we can see was written by our own, still open
-- transaction (or one of its subtransactions): a visible row version whose
-- creator is still in progress can only be ours.  xmin is 32 bits; our
-- subtransactions' xids are never older than our top-level xid, so it is
-- widened with that xid's epoch, and anything older is not ours.  (A
-- transaction whose subtransactions straddle an epoch boundary may get a
-- false "not ours": the caller then merely waits for its lock_timeout.)
CREATE FUNCTION authctx._written_by_us(p_xmin xid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_top bigint := pg_current_xact_id_if_assigned()::text::bigint;
  v_low bigint := p_xmin::text::bigint;
BEGIN
  IF v_top IS NULL OR v_low IS NULL THEN
    RETURN false;                 -- we have written nothing
  END IF;
  IF v_low < (v_top & 4294967295) THEN
    RETURN false;                 -- older than our top-level xid
  END IF;
  RETURN pg_xact_status(((v_top & ~4294967295::bigint) | v_low)::text::xid8) = 'in progress';
END
$$;
COMMENT ON FUNCTION authctx._written_by_us(xid) IS 'internal: whether a visible row version was written by the current transaction';

-- Revoke every session and refresh token of a login family.  Repeats until
-- a pass changes nothing: a refresh we had to wait for may have committed
-- new rows of the family that the first pass's snapshot did not show.
CREATE FUNCTION authctx._revoke_family(p_family_id uuid, p_at timestamptz,
                                       OUT sessions integer, OUT tokens integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tokens   integer;
  v_sessions integer;
BEGIN
  sessions := 0;
  tokens := 0;
  LOOP
    UPDATE authctx.refresh_tokens rt SET revoked_at = p_at
     WHERE rt.family_id = p_family_id AND rt.revoked_at IS NULL;
    GET DIAGNOSTICS v_tokens = ROW_COUNT;
    UPDATE authctx.sessions s SET revoked_at = p_at
     WHERE s.family_id = p_family_id AND s.revoked_at IS NULL;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    sessions := sessions + v_sessions;
    tokens := tokens + v_tokens;
    EXIT WHEN v_tokens = 0 AND v_sessions = 0;
  END LOOP;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family(uuid, timestamptz) IS
  'internal: revoke a login family (sessions and refresh tokens); returns how many of each it revoked';

-- Revoke a user's sessions and refresh tokens, except (optionally) one
-- session and its family; returns how many live sessions were revoked.
-- Loops like _revoke_family, for the same reason.  identity's set_password
-- can pass the caller's own session as p_except.
CREATE FUNCTION authctx._revoke_user_sessions(p_user_id uuid, p_except uuid, p_reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now     timestamptz := clock_timestamp();
  v_idle    interval := authctx._setting('authctx.session_idle_timeout');
  v_family  uuid;
  v_tokens  integer;
  v_changed integer;
  v_live    integer;
  v_total   integer := 0;
BEGIN
  IF p_except IS NOT NULL THEN
    SELECT s.family_id INTO v_family FROM authctx.sessions s WHERE s.id = p_except;
  END IF;
  LOOP
    UPDATE authctx.refresh_tokens rt SET revoked_at = v_now
     WHERE rt.user_id = p_user_id AND rt.revoked_at IS NULL
       AND rt.family_id IS DISTINCT FROM v_family;
    GET DIAGNOSTICS v_tokens = ROW_COUNT;
    WITH r AS (
      UPDATE authctx.sessions s SET revoked_at = v_now
       WHERE s.user_id = p_user_id AND s.revoked_at IS NULL
         AND s.family_id IS DISTINCT FROM v_family
      RETURNING s.expires_at, s.last_seen_at)
    SELECT count(*),
           count(*) FILTER (WHERE r.expires_at > v_now
                              AND (v_idle = '0' OR r.last_seen_at + v_idle > v_now))
      INTO v_changed, v_live
      FROM r;
    v_total := v_total + v_live;
    EXIT WHEN v_tokens = 0 AND v_changed = 0;
  END LOOP;
  IF v_total > 0 THEN
    PERFORM authctx._audit('session_revoked', p_user_id, NULL, NULL,
                           jsonb_build_object('reason', p_reason, 'sessions', v_total));
  END IF;
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx._revoke_user_sessions(uuid, uuid, text) IS
  'internal: revoke a user''s sessions and refresh tokens except one session''s family; returns live sessions revoked';

-- The tenant a new session or key of a user gets, for the management
-- functions: the named tenant (unknown: 42704; the user must be a member:
-- 42501), else the user's only membership, else none (p_required: 22023).
CREATE FUNCTION authctx._member_tenant(p_user_id uuid, p_tenant text, p_required boolean)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tenant uuid;
  v_count  bigint;
BEGIN
  IF p_tenant IS NULL THEN
    IF p_required THEN
      RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = '22023';
    END IF;
    SELECT count(*), (array_agg(m.tenant_id))[1] INTO v_count, v_tenant
      FROM authctx.memberships m WHERE m.user_id = p_user_id;
    RETURN CASE WHEN v_count = 1 THEN v_tenant END;
  END IF;
  v_tenant := authctx._require_tenant(p_tenant);
  IF NOT EXISTS (SELECT 1 FROM authctx.memberships m
                  WHERE m.tenant_id = v_tenant AND m.user_id = p_user_id) THEN
    RAISE EXCEPTION 'user is not a member of this tenant' USING ERRCODE = '42501';
  END IF;
  RETURN v_tenant;
END
$$;
COMMENT ON FUNCTION authctx._member_tenant(uuid, text, boolean) IS 'internal: tenant for a new session or API key, checked for membership';

-- The user for the management functions: must exist (42704, identity's
-- rule, and is then locked against deletion) and be enabled (55000).
CREATE FUNCTION authctx._enabled_user(p_user_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(p_user_id);
  IF EXISTS (SELECT 1 FROM authctx.users u
              WHERE u.id = p_user_id AND u.disabled_at IS NOT NULL) THEN
    RAISE EXCEPTION 'user is disabled' USING ERRCODE = '55000';
  END IF;
  RETURN p_user_id;
END
$$;
COMMENT ON FUNCTION authctx._enabled_user(uuid) IS 'internal: check that a user exists (42704) and is enabled (55000)';

-- A new session and refresh token in a family; stores only verifiers.
CREATE FUNCTION authctx._new_pair(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                  p_parent_id uuid, p_metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_session authctx.token := authctx._token_new('session');
  v_refresh authctx.token := authctx._token_new('refresh');
  v_now     timestamptz := clock_timestamp();
  v_expires timestamptz := v_now + authctx._setting('authctx.session_lifetime');
  v_result  authctx.login_result;
BEGIN
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata)
  VALUES (authctx._token_id(v_session), p_user_id, p_tenant_id, p_family_id,
          authctx._token_verifier(v_session), v_now, v_now, v_expires,
          coalesce(p_metadata, '{}'::jsonb));
  INSERT INTO authctx.refresh_tokens (id, family_id, session_id, user_id, tenant_id,
                                      parent_id, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_refresh), p_family_id, authctx._token_id(v_session),
          p_user_id, p_tenant_id, p_parent_id, authctx._token_verifier(v_refresh),
          v_now, v_now + authctx._setting('authctx.refresh_lifetime'));
  v_result := ROW(v_session, v_refresh, authctx._token_id(v_session), p_tenant_id, v_expires);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb) IS 'internal: issue a session and refresh token in a family';

-- Start a login: a session and a refresh token in a new family, and a
-- login audit event.  For callers that have already authenticated the user
-- (login, login_webauthn) and checked that the user is enabled and a
-- member of p_tenant_id (NULL: no tenant).
CREATE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_family uuid := gen_random_uuid();
  v_result authctx.login_result;
BEGIN
  v_result := authctx._new_pair(_issue_session.user_id, _issue_session.tenant_id, v_family,
                                NULL, _issue_session.metadata);
  PERFORM authctx._audit('login', _issue_session.user_id, _issue_session.tenant_id,
                         v_result.session_id,
                         jsonb_build_object('method', _issue_session.method, 'family_id', v_family));
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._issue_session(uuid, uuid, text, jsonb) IS
  'internal: create a session and refresh token in a new family for an authenticated user, audit login';

-- public functions ----------------------------------------------------------

CREATE FUNCTION authctx.login(email text, password text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user     uuid;
  v_disabled timestamptz;
  v_failures integer;
  v_locked   timestamptz;
  v_verified uuid;
  v_tenant   uuid;
  v_count    bigint;
  v_reason   text;
  v_counts   boolean := false;
  v_base     interval;
  v_max      interval;
BEGIN
  SELECT u.id, u.disabled_at INTO v_user, v_disabled
    FROM authctx.users u WHERE lower(u.email) = lower(login.email);

  IF v_user IS NOT NULL THEN
    -- one password check per account at a time (see the lockout notes)
    PERFORM pg_advisory_xact_lock(hashtextextended('authctx.login ' || v_user::text, 0));
    SELECT t.failures, t.locked_until INTO v_failures, v_locked
      FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;

  IF v_locked > clock_timestamp() THEN
    PERFORM authctx._password_dummy_verify(password);
    v_reason := 'locked';
  ELSE
    -- hashes for an unknown email too
    v_verified := authctx.verify_password(email, password);
    IF v_user IS NULL THEN
      v_reason := 'unknown_user';
    ELSIF v_verified IS DISTINCT FROM v_user THEN
      IF v_disabled IS NOT NULL THEN
        v_reason := 'disabled';
      ELSE
        v_reason := 'bad_password';
        v_counts := true;
      END IF;
    ELSIF v_disabled IS NOT NULL THEN
      v_reason := 'disabled';
    ELSIF tenant IS NOT NULL THEN
      v_tenant := authctx._resolve_tenant(tenant);
      IF v_tenant IS NULL OR NOT EXISTS (SELECT 1 FROM authctx.memberships m
                                          WHERE m.tenant_id = v_tenant AND m.user_id = v_user) THEN
        v_reason := 'not_member';
      END IF;
    ELSE
      SELECT count(*), (array_agg(m.tenant_id))[1] INTO v_count, v_tenant
        FROM authctx.memberships m WHERE m.user_id = v_user;
      IF v_count <> 1 THEN
        v_tenant := NULL;
      END IF;
    END IF;
  END IF;

  IF v_reason IS NOT NULL THEN
    -- our settings travel with the record (the worker does not see them)
    v_base := authctx._setting('authctx.lockout_base_delay');
    v_max := authctx._setting('authctx.lockout_max_delay');
    -- in a transaction of its own: our caller's rollback must not undo it
    PERFORM authctx._autonomous('login_failed', jsonb_build_object(
      'user_id', v_user,
      'reason', v_reason,
      'method', 'password',
      'count', v_counts,
      'threshold', current_setting('authctx.lockout_threshold')::integer,
      'base_delay', extract(epoch FROM v_base),
      'max_delay', extract(epoch FROM v_max),
      'db_role', session_user));
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;

  IF v_failures IS NOT NULL THEN
    DELETE FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'password', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login(text, text, text) IS
  'password login: a session and a refresh token; any failure raises 28P01 with one generic message and is counted and audited in a transaction of its own';

CREATE FUNCTION authctx.refresh(refresh_token text) RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok    authctx.token := authctx._parse_token(refresh_token, 'refresh');
  v_id     uuid;
  v_now    timestamptz := clock_timestamp();
  v_row    authctx.refresh_tokens;
  v_xmin   xid;
  v_spent  boolean;
  v_grace  interval;
  v_meta   jsonb;
  v_result authctx.login_result;
BEGIN
  IF v_tok IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  v_id := authctx._token_id(v_tok);

  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.revoked_at IS NOT NULL
     OR v_row.expires_at <= v_now
     OR NOT EXISTS (SELECT 1 FROM authctx.users u
                     WHERE u.id = v_row.user_id AND u.disabled_at IS NULL) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  SELECT s.metadata INTO v_meta FROM authctx.sessions s WHERE s.id = v_row.session_id;

  -- Spend it.  Of concurrent spenders one updates; the others wait for its
  -- row lock, re-check and match nothing.  Re-checking locks the newest row
  -- version even when the check then fails, so the UPDATE runs in a
  -- subtransaction that is rolled back when it matched nothing: that
  -- releases the lock, and the reuse path below holds none.
  BEGIN
    UPDATE authctx.refresh_tokens rt SET spent_at = v_now
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
    v_result := authctx._new_pair(v_row.user_id, v_row.tenant_id, v_row.family_id, v_id, v_meta);
    PERFORM authctx._audit('refresh', v_row.user_id, v_row.tenant_id, v_result.session_id,
                           jsonb_build_object('family_id', v_row.family_id));
    RETURN v_result;
  END IF;

  -- Spent (or revoked) by someone else.  We hold no lock on the family.
  SELECT rt.xmin, rt.spent_at, rt.revoked_at
    INTO v_xmin, v_row.spent_at, v_row.revoked_at
    FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  v_now := clock_timestamp();
  IF NOT FOUND OR v_row.revoked_at IS NOT NULL OR v_row.spent_at IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  v_grace := authctx._setting('authctx.refresh_reuse_grace');
  IF v_grace > '0' AND v_now - v_row.spent_at <= v_grace THEN
    -- A client racing itself.  Lock the spent token so that a concurrent
    -- family revocation either waits for our new rows or we see it.
    PERFORM 1 FROM authctx.refresh_tokens rt
      WHERE rt.id = v_id AND rt.revoked_at IS NULL
      FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
    END IF;
    v_result := authctx._new_pair(v_row.user_id, v_row.tenant_id, v_row.family_id, v_id, v_meta);
    PERFORM authctx._audit('refresh', v_row.user_id, v_row.tenant_id, v_result.session_id,
                           jsonb_build_object('family_id', v_row.family_id, 'grace', true));
    RETURN v_result;
  END IF;

  -- Spent earlier in this very transaction: that spend dies with the error
  -- we raise, and the worker would wait for our row lock.  Not a reuse.
  IF authctx._written_by_us(v_xmin) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Reuse of a spent token: revoke the family in a transaction of its own.
  PERFORM authctx._autonomous('refresh_reuse', jsonb_build_object(
    'family_id', v_row.family_id,
    'user_id', v_row.user_id,
    'tenant_id', v_row.tenant_id,
    'session_id', v_row.session_id,
    'token_id', v_id,
    'db_role', session_user));
  RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
END
$$;
COMMENT ON FUNCTION authctx.refresh(text) IS
  'spend a refresh token for a new session and refresh token; a spent token presented again revokes its whole family (28000)';

CREATE FUNCTION authctx.logout(session_token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok  authctx.token := authctx._parse_token(session_token, 'session');
  v_now  timestamptz := clock_timestamp();
  v_idle interval;
  v_row  authctx.sessions;
BEGIN
  IF v_tok IS NOT NULL THEN
    v_idle := authctx._setting('authctx.session_idle_timeout');
    SELECT * INTO v_row FROM authctx.sessions s WHERE s.id = authctx._token_id(v_tok);
  END IF;
  IF v_row.id IS NULL
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.revoked_at IS NOT NULL
     OR v_row.expires_at <= v_now
     OR (v_idle > '0' AND v_row.last_seen_at + v_idle <= v_now) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  UPDATE authctx.sessions s SET revoked_at = v_now
   WHERE s.id = v_row.id AND s.revoked_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  -- the whole login ends: its refresh tokens cannot bring it back
  PERFORM authctx._revoke_family(v_row.family_id, v_now);
  PERFORM authctx._audit('logout', v_row.user_id, v_row.tenant_id, v_row.id,
                         jsonb_build_object('family_id', v_row.family_id));
END
$$;
COMMENT ON FUNCTION authctx.logout(text) IS
  'revoke the session of a session token, with its login family''s refresh tokens; 28000 for an invalid token';

CREATE FUNCTION authctx.create_session(user_id uuid, tenant text DEFAULT NULL,
                                       ttl interval DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok    authctx.token := authctx._token_new('session');
  v_user   uuid := authctx._enabled_user(create_session.user_id);
  v_tenant uuid := authctx._member_tenant(v_user, create_session.tenant, false);
  v_ttl    interval := coalesce(create_session.ttl, authctx._setting('authctx.session_lifetime'));
  v_now    timestamptz := clock_timestamp();
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
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_family uuid;
  v_user   uuid;
  v_tenant uuid;
  v_own    boolean;
  v_rest   record;
BEGIN
  SELECT s.family_id, s.user_id, s.tenant_id INTO v_family, v_user, v_tenant
    FROM authctx.sessions s WHERE s.id = revoke_session.session_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE authctx.sessions s SET revoked_at = v_now
   WHERE s.id = revoke_session.session_id AND s.revoked_at IS NULL;
  v_own := FOUND;
  -- The whole login goes: its refresh tokens must not bring it back, and a
  -- refresh may already have replaced this session by a newer one.
  SELECT * INTO v_rest FROM authctx._revoke_family(v_family, v_now);
  IF NOT v_own AND v_rest.sessions = 0 AND v_rest.tokens = 0 THEN
    RETURN false;
  END IF;
  PERFORM authctx._audit('session_revoked', v_user, v_tenant, revoke_session.session_id,
                         jsonb_build_object('reason', 'revoke_session', 'family_id', v_family,
                                            'sessions', v_rest.sessions + v_own::integer));
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.revoke_session(uuid) IS
  'revoke a session with its whole login family (sessions and refresh tokens); true when this call revoked anything';

CREATE FUNCTION authctx.revoke_user_sessions(user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT authctx._revoke_user_sessions(revoke_user_sessions.user_id, NULL, 'revoke_user_sessions');
$$;
COMMENT ON FUNCTION authctx.revoke_user_sessions(uuid) IS
  'revoke every session and refresh token of a user; returns how many live sessions were revoked';

CREATE FUNCTION authctx.list_sessions(user_id uuid)
RETURNS TABLE (session_id uuid, tenant_id uuid, created_at timestamptz,
               last_seen_at timestamptz, expires_at timestamptz, metadata jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.id, s.tenant_id, s.created_at, s.last_seen_at, s.expires_at, s.metadata
    FROM authctx.sessions s,
         (SELECT clock_timestamp() AS now,
                 authctx._setting('authctx.session_idle_timeout') AS idle) c
   WHERE s.user_id = list_sessions.user_id
     AND s.revoked_at IS NULL
     AND s.expires_at > c.now
     AND (c.idle = '0' OR s.last_seen_at + c.idle > c.now)
   ORDER BY s.created_at, s.id;
$$;
COMMENT ON FUNCTION authctx.list_sessions(uuid) IS 'a user''s live sessions (not revoked, not expired, not idle), without secrets';

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
-- $3 (margin), $4 (throttle window).
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
  -- rows stay a little past their end: last-seen times arrive late
  v_margin interval := interval '1 hour' + authctx._setting('authctx.last_seen_interval');
  -- a failure streak is forgotten after twice the longest lockout
  v_window interval := 2 * authctx._setting('authctx.lockout_max_delay');
  v_total  bigint := 0;
BEGIN
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3
       OR ($2 > interval '0' AND t.last_seen_at + $2 < $1 - $3)$c$,
    v_now, v_idle, v_margin, v_window);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, v_window);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, v_window);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, v_window);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.login_throttle',
    $c$t.last_failure_at < $1 - $4 AND (t.locked_until IS NULL OR t.locked_until < $1)$c$,
    v_now, v_idle, v_margin, v_window);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions, refresh tokens, API keys, expired WebAuthn challenges and stale lockout rows in small batches; returns rows removed';

-- privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._setting(text), authctx._verifier_equal(bytea, bytea),
  authctx._parse_token(text, text), authctx._written_by_us(xid), authctx._revoke_family(uuid, timestamptz),
  authctx._revoke_user_sessions(uuid, uuid, text), authctx._member_tenant(uuid, text, boolean),
  authctx._enabled_user(uuid), authctx._new_pair(uuid, uuid, uuid, uuid, jsonb),
  authctx._issue_session(uuid, uuid, text, jsonb),
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
