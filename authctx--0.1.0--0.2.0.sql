-- authctx 0.1.0 -> 0.2.0
--
-- Every change to the schema since 0.1.0, in the order the sections were
-- added.  The result must equal a fresh install of 0.2.0 (test/t/050_upgrade.pl
-- compares the two), and no row may be lost.
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION authctx UPDATE TO '0.2.0'" to load this file. \quit

-- session: the session layer under concurrency and over time (issue 18) --
-- a per-user revocation stamp that wins over logins and refreshes in
-- flight; one lock order (user, membership, family, refresh tokens,
-- sessions); logout of any session token ends its family; cleanup keeps the
-- session rows of families that can still refresh and never makes a
-- revocation wait; reuse detection by 64-bit xid; emails compared by one
-- Unicode normalisation; refresh checks the membership.

-- users: the revocation stamp (columns go last, as in src/sql/20_tables.sql)
ALTER TABLE authctx.users
  ADD COLUMN sessions_revoked_before timestamptz,
  ADD COLUMN sessions_revoked_except uuid;
-- refresh tokens: the transaction that spent each one
ALTER TABLE authctx.refresh_tokens ADD COLUMN spent_xid xid8;

-- emails: one key for uniqueness and lookup
CREATE FUNCTION authctx._email_key(email text) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_email_key'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._email_key(text) IS
  'internal: the normalised form of an email that uniqueness and lookup compare (NFC, Unicode default case folding, NFC; UTF-8 bytes)';

REVOKE ALL ON FUNCTION authctx._email_key(text) FROM PUBLIC;

-- Emails that 0.1.0 told apart (lower() under the database's collation,
-- no Unicode normalisation) but that are one address now: nothing is
-- merged or dropped silently; the update stops and names the users.
DO $upgrade$
DECLARE
  v_groups text;
  v_bad    text;
  v_user   record;
BEGIN
  FOR v_user IN SELECT u.id, u.email FROM authctx.users u LOOP
    BEGIN
      PERFORM authctx._email_key(v_user.email);
    EXCEPTION WHEN character_not_in_repertoire THEN
      v_bad := concat_ws(', ', v_bad, v_user.id::text);
    END;
  END LOOP;
  IF v_bad IS NOT NULL THEN
    RAISE EXCEPTION 'some user emails are not valid UTF-8'
      USING ERRCODE = 'character_not_in_repertoire',
            DETAIL = 'Users: ' || v_bad || '.',
            HINT = 'Correct their emails with authctx.set_email, then run ALTER EXTENSION authctx UPDATE again.';
  END IF;
  SELECT string_agg(g.ids, '; ') INTO v_groups
    FROM (SELECT string_agg(u.id::text, ', ' ORDER BY u.created_at, u.id) AS ids
            FROM authctx.users u
           GROUP BY authctx._email_key(u.email)
          HAVING count(*) > 1) g;
  IF v_groups IS NOT NULL THEN
    RAISE EXCEPTION 'some users share an email once emails are compared after Unicode normalization and case folding'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Users sharing an email (one group per semicolon): ' || v_groups || '.',
            HINT = 'Give all but one user of each group another email with authctx.set_email (or merge them), then run ALTER EXTENSION authctx UPDATE again.';
  END IF;
END
$upgrade$;
DROP INDEX authctx.users_email_lower_key;
CREATE UNIQUE INDEX users_email_key ON authctx.users (authctx._email_key(email));
COMMENT ON TABLE authctx.users IS 'users; email unique by authctx._email_key (Unicode NFC and case folding); disabled_at set when disabled; sessions_revoked_before: sessions and refresh tokens issued until then are revoked (except family sessions_revoked_except)';

-- the per-database secret that keys the per-account lock
CREATE TABLE authctx.database_secret (
  id      boolean PRIMARY KEY DEFAULT true CHECK (id),
  secret  bytea NOT NULL CHECK (pg_catalog.octet_length(secret) OPERATOR(pg_catalog.>=) 32)
);
INSERT INTO authctx.database_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));
COMMENT ON TABLE authctx.database_secret IS 'one random per-database key (keys the per-account lock); never dumped';
REVOKE ALL ON TABLE authctx.database_secret FROM PUBLIC;

-- the cache hears of a new stamp (src/sql/65_cache.sql)
DROP TRIGGER cache_invalidate_update ON authctx.users;
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.users FOR EACH ROW
  WHEN ((OLD.id, OLD.disabled_at, OLD.sessions_revoked_before, OLD.sessions_revoked_except)
        IS DISTINCT FROM
        (NEW.id, NEW.disabled_at, NEW.sessions_revoked_before, NEW.sessions_revoked_except))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
ALTER TABLE authctx.users ENABLE ALWAYS TRIGGER cache_invalidate_update;

-- reuse detection no longer reads 32-bit xmin
DROP FUNCTION authctx._written_by_us(xid);

-- identity (src/sql/40_identity.sql)
CREATE FUNCTION authctx._keyed_hash64(data bytea, key bytea) RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_keyed_hash64'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._keyed_hash64(bytea, bytea) IS
  'internal: the first 64 bits of keyed BLAKE2b of data (an advisory lock key)';

REVOKE ALL ON FUNCTION authctx._keyed_hash64(bytea, bytea) FROM PUBLIC;

CREATE FUNCTION authctx._lock_account(email text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lock bigint;
BEGIN
  SELECT authctx._keyed_hash64('authctx account '::bytea
                                 OPERATOR(pg_catalog.||)
                                 coalesce(authctx._email_key(_lock_account.email), ''::bytea),
                               s.secret)
    INTO v_lock
    FROM authctx.database_secret s;
  IF v_lock IS NULL THEN
    RAISE EXCEPTION 'authctx.database_secret is empty'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Reinstall the extension, or insert a random 32-byte secret.';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(v_lock);
END
$$;
COMMENT ON FUNCTION authctx._lock_account(text) IS
  'internal: the per-account lock of password attempts (a keyed hash of the email''s key), for known and unknown emails alike';

REVOKE ALL ON FUNCTION authctx._lock_account(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx._check_email(email text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF _check_email.email IS NULL
     OR pg_catalog.length(_check_email.email) OPERATOR(pg_catalog.>) 254
     OR _check_email.email OPERATOR(pg_catalog.!~) '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$'
     OR authctx._email_key(_check_email.email) IS NULL THEN
    RAISE EXCEPTION 'invalid email address'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An email address has exactly one "@" with text on both sides, no whitespace, and at most 254 characters.';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._check_email(text) IS
  'internal: raises 22023 unless the text is a plausible email address';

CREATE OR REPLACE FUNCTION authctx.create_user(email text, display_name text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  new_id uuid;
BEGIN
  PERFORM authctx._check_email(create_user.email);

  INSERT INTO authctx.users AS u (email, display_name)
  VALUES (create_user.email, create_user.display_name)
  ON CONFLICT DO NOTHING
  RETURNING u.id INTO new_id;

  IF new_id IS NULL THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END IF;
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION authctx.create_user(text, text) IS
  'create a user; email unique after Unicode normalization and case folding (23505), invalid email 22023; returns its id';

CREATE OR REPLACE FUNCTION authctx.set_email(user_id uuid, email text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._check_email(set_email.email);
  PERFORM authctx._require_user(set_email.user_id);
  BEGIN
    UPDATE authctx.users AS u
       SET email = set_email.email
     WHERE u.id OPERATOR(pg_catalog.=) set_email.user_id;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END;
END
$$;
COMMENT ON FUNCTION authctx.set_email(uuid, text) IS
  'change a user''s email (unique after Unicode normalization and case folding); sessions are untouched';

CREATE OR REPLACE FUNCTION authctx.disable_user(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
BEGIN
  PERFORM authctx._require_user(disable_user.user_id);
  UPDATE authctx.users AS u
     SET disabled_at = pg_catalog.clock_timestamp()
   WHERE u.id OPERATOR(pg_catalog.=) disable_user.user_id
     AND u.disabled_at IS NULL;
  -- A revocation: every session and refresh token issued until now is
  -- revoked for good (enable_user brings none back), those of a login or
  -- refresh in flight included.  API keys are only refused while disabled.
  IF FOUND THEN
    PERFORM authctx._revoke_user_sessions(disable_user.user_id, NULL, 'disable_user');
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.disable_user(uuid) IS
  'disable a user: no login, every session and refresh token revoked for good, API keys refused while disabled (idempotent)';

CREATE OR REPLACE FUNCTION authctx.enable_user(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(enable_user.user_id);
  UPDATE authctx.users AS u
     SET disabled_at = NULL
   WHERE u.id OPERATOR(pg_catalog.=) enable_user.user_id
     AND u.disabled_at IS NOT NULL;
END
$$;
COMMENT ON FUNCTION authctx.enable_user(uuid) IS
  'enable a disabled user again: logins and API keys work again, sessions revoked by the disable stay revoked (idempotent)';

CREATE OR REPLACE FUNCTION authctx.remove_member(tenant text, user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  tid uuid;
BEGIN
  tid := authctx._require_tenant(remove_member.tenant);
  PERFORM authctx._require_user(remove_member.user_id);

  -- Sessions stay: auth_begin refuses them for this tenant from now on,
  -- and refresh refuses their families (a login or refresh in flight holds
  -- the membership FOR SHARE: we wait for it, then it is refused too).
  DELETE FROM authctx.memberships AS m
   WHERE m.tenant_id OPERATOR(pg_catalog.=) tid
     AND m.user_id OPERATOR(pg_catalog.=) remove_member.user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % is not a member of tenant "%"', remove_member.user_id, remove_member.tenant
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.remove_member(text, uuid) IS
  'remove a user from a tenant; 42704 if not a member';

CREATE OR REPLACE FUNCTION authctx.set_password(user_id uuid, password text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  new_hash text;
  keep     uuid;
  revoked  integer;
BEGIN
  IF set_password.password IS NULL THEN
    RAISE EXCEPTION 'password must not be null'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM authctx._require_user(set_password.user_id);
  -- hash first (slow), then lock the user's row (lock order, 2): logins of
  -- this user wait from here until we commit, and a login in flight holds
  -- the row already and will have its session revoked by our stamp
  new_hash := authctx._password_hash(set_password.password);
  PERFORM 1 FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) set_password.user_id
     FOR NO KEY UPDATE;

  INSERT INTO authctx.password_credentials AS c (user_id, hash, updated_at)
  VALUES (set_password.user_id, new_hash, pg_catalog.clock_timestamp())
  ON CONFLICT ON CONSTRAINT password_credentials_pkey DO UPDATE
     SET hash = excluded.hash, updated_at = excluded.updated_at;

  -- Revoke the user's other sessions: every one except the session this
  -- transaction authenticated with, when it belongs to the same user.
  IF authctx.user_id() OPERATOR(pg_catalog.=) set_password.user_id THEN
    keep := authctx.session_id();
  END IF;
  -- (authctx._revoke_user_sessions, 50_session.sql, keeps that session's
  -- login family, and stamps the user so that what a login or refresh in
  -- flight issues is revoked too)
  revoked := authctx._revoke_user_sessions(set_password.user_id, keep, 'password_changed');

  PERFORM authctx._audit('password_changed', set_password.user_id, NULL, keep,
                         pg_catalog.jsonb_build_object('revoked_sessions', revoked));
END
$$;
COMMENT ON FUNCTION authctx.set_password(uuid, text) IS
  'set a user''s password (argon2id; length policy 22023) and revoke the user''s other sessions';

CREATE OR REPLACE FUNCTION authctx.verify_password(email text, password text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  uid      uuid;
  disabled boolean;
  old_hash text;
BEGIN
  IF verify_password.password IS NULL THEN
    RETURN NULL;
  END IF;

  SELECT u.id, u.disabled_at IS NOT NULL, c.hash
    INTO uid, disabled, old_hash
    FROM authctx.users u
    LEFT JOIN authctx.password_credentials c
      ON c.user_id OPERATOR(pg_catalog.=) u.id
   WHERE authctx._email_key(u.email) OPERATOR(pg_catalog.=) authctx._email_key(verify_password.email);

  -- Unknown email or no password: spend the same time, then fail.
  IF old_hash IS NULL THEN
    PERFORM authctx._password_dummy_verify(verify_password.password);
    RETURN NULL;
  END IF;
  IF NOT authctx._password_verify(old_hash, verify_password.password) THEN
    RETURN NULL;
  END IF;
  -- Checked only after the password, so that timing tells nothing.
  IF disabled THEN
    RETURN NULL;
  END IF;

  -- Settings changed since the hash was made: rehash now that we know the
  -- password, unless this transaction cannot write (read-only, standby).
  IF authctx._password_needs_rehash(old_hash)
     AND pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' THEN
    UPDATE authctx.password_credentials AS c
       SET hash = authctx._password_rehash(verify_password.password),
           updated_at = pg_catalog.clock_timestamp()
     WHERE c.user_id OPERATOR(pg_catalog.=) uid
       AND c.hash OPERATOR(pg_catalog.=) old_hash;
  END IF;
  RETURN uid;
END
$$;
COMMENT ON FUNCTION authctx.verify_password(text, text) IS
  'id of the user with this email (compared by authctx._email_key) and password, or NULL (unknown email, disabled user, no or wrong password); rehashes when the parameters changed';

-- sessions (src/sql/50_session.sql): new helpers, then what changed
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

CREATE FUNCTION authctx._family_lock_key(p_family_id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT ('x' OPERATOR(pg_catalog.||)
          pg_catalog.translate(pg_catalog.left(p_family_id::text, 18), '-', ''))::bit(64)::bigint;
$$;
COMMENT ON FUNCTION authctx._family_lock_key(uuid) IS 'internal: advisory lock key of a login family';

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
       AND s.expires_at > p_at - v_half
       AND (v_idle = '0' OR s.last_seen_at + v_idle > p_at - v_half)
    RETURNING s.expires_at, s.last_seen_at)
  SELECT count(*),
         count(*) FILTER (WHERE r.expires_at > p_at
                            AND (v_idle = '0' OR r.last_seen_at + v_idle > p_at))
    INTO sessions, live
    FROM r;
  IF v_idle > '0' THEN
    WITH r AS (
      UPDATE authctx.sessions s SET revoked_at = p_at
       WHERE s.ctid = ANY (ARRAY(
               SELECT i.ctid FROM authctx.sessions i
                WHERE i.family_id = p_family_id AND i.revoked_at IS NULL
                  AND i.expires_at > p_at - v_half
                  AND i.last_seen_at + v_idle <= p_at - v_half
                  FOR NO KEY UPDATE OF i SKIP LOCKED))
      RETURNING 1)
    SELECT count(*) INTO v_idled FROM r;
    sessions := sessions + v_idled;
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family_rows(uuid, timestamptz) IS
  'internal: revoke a login family''s rows for a caller holding its locks; returns sessions, tokens and live sessions revoked';

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

CREATE OR REPLACE FUNCTION authctx._revoke_family(p_family_id uuid, p_at timestamptz,
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

CREATE OR REPLACE FUNCTION authctx._revoke_user_sessions(p_user_id uuid, p_except uuid, p_reason text)
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

CREATE OR REPLACE FUNCTION authctx._member_tenant(p_user_id uuid, p_tenant text, p_required boolean)
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

CREATE OR REPLACE FUNCTION authctx._enabled_user(p_user_id uuid) RETURNS uuid
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

CREATE OR REPLACE FUNCTION authctx._new_pair(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                  p_parent_id uuid, p_metadata jsonb)
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

CREATE OR REPLACE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
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

CREATE FUNCTION authctx._refresh_pair(p_token authctx.refresh_tokens, p_grace boolean)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_meta   jsonb;
  v_result authctx.login_result;
BEGIN
  SELECT s.metadata INTO v_meta FROM authctx.sessions s
   WHERE s.family_id = p_token.family_id
   ORDER BY s.id = p_token.session_id DESC, s.created_at DESC
   LIMIT 1;
  v_result := authctx._new_pair(p_token.user_id, p_token.tenant_id, p_token.family_id,
                                p_token.id, v_meta);
  PERFORM authctx._audit('refresh', p_token.user_id, p_token.tenant_id, v_result.session_id,
                         CASE WHEN p_grace
                              THEN jsonb_build_object('family_id', p_token.family_id, 'grace', true)
                              ELSE jsonb_build_object('family_id', p_token.family_id) END);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._refresh_pair(authctx.refresh_tokens, boolean) IS
  'internal: issue the new pair of a refresh in the spent token''s family, with its metadata, and audit it';

CREATE OR REPLACE FUNCTION authctx.login(email text, password text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key      bytea := authctx._email_key(login.email);
  v_user     uuid;
  v_disabled timestamptz;
  v_failures integer;
  v_locked   timestamptz;
  v_verified uuid;
  v_tenant   uuid;
  v_reason   text;
  v_counts   boolean := false;
  v_base     interval;
  v_max      interval;
BEGIN
  -- A read-only transaction (a standby, BEGIN READ ONLY) can issue nothing
  -- and record no failure: refuse before any password is tried, so that it
  -- is no place to test guesses without the lockout counting them.
  IF current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- one password attempt per email at a time, known or not (lock order, 1)
  PERFORM authctx._lock_account(login.email);
  -- the user's row, FOR SHARE before the password is read (lock order, 2):
  -- a set_password, disable_user or revoke_user_sessions either committed
  -- before (we read its results, or fail with 40001 in REPEATABLE READ) or
  -- waits for us and then revokes what we issue
  IF v_key IS NOT NULL THEN
    SELECT u.id, u.disabled_at INTO v_user, v_disabled
      FROM authctx.users u WHERE authctx._email_key(u.email) = v_key
       FOR SHARE;
  END IF;
  IF v_user IS NOT NULL THEN
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
      IF v_tenant IS NULL OR NOT authctx._lock_membership(v_tenant, v_user) THEN
        v_reason := 'not_member';
      END IF;
    ELSE
      -- the only membership, or none
      v_tenant := authctx._member_tenant(v_user, NULL, false);
    END IF;
  END IF;

  IF v_reason IS NOT NULL THEN
    -- our settings travel with the record (the worker does not see them)
    v_base := authctx._setting('authctx.lockout_base_delay');
    v_max := authctx._setting('authctx.lockout_max_delay');
    -- in a transaction of its own: our caller's rollback must not undo it;
    -- a failure that cannot be recorded fails closed
    IF NOT coalesce(authctx._autonomous('login_failed', jsonb_build_object(
      'user_id', v_user,
      'reason', v_reason,
      'method', 'password',
      'count', v_counts,
      'threshold', current_setting('authctx.lockout_threshold')::integer,
      'base_delay', extract(epoch FROM v_base),
      'max_delay', extract(epoch FROM v_max),
      'db_role', session_user)), false) THEN
      RAISE EXCEPTION 'could not record a failed login' USING ERRCODE = '55000';
    END IF;
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

CREATE OR REPLACE FUNCTION authctx.refresh(refresh_token text) RETURNS authctx.login_result
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
  IF NOT coalesce(authctx._autonomous('refresh_reuse', jsonb_build_object(
    'family_id', v_row.family_id,
    'user_id', v_row.user_id,
    'tenant_id', v_row.tenant_id,
    'session_id', v_row.session_id,
    'token_id', v_id,
    'db_role', session_user)), false) THEN
    RAISE EXCEPTION 'could not revoke the login family of a reused refresh token' USING ERRCODE = '55000';
  END IF;
  RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
END
$$;
COMMENT ON FUNCTION authctx.refresh(text) IS
  'spend a refresh token for a new session and refresh token; a spent token presented again revokes its whole family (28000)';

CREATE OR REPLACE FUNCTION authctx.logout(session_token text) RETURNS void
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

CREATE OR REPLACE FUNCTION authctx.create_session(user_id uuid, tenant text DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION authctx.revoke_session(session_id uuid) RETURNS boolean
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

CREATE OR REPLACE FUNCTION authctx.revoke_user_sessions(user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
  SELECT authctx._revoke_user_sessions(revoke_user_sessions.user_id, NULL, 'revoke_user_sessions');
$$;
COMMENT ON FUNCTION authctx.revoke_user_sessions(uuid) IS
  'revoke every session and refresh token of a user issued until now, including those of logins and refreshes still in flight; returns how many live sessions were revoked';

CREATE OR REPLACE FUNCTION authctx.list_sessions(user_id uuid)
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
           AND s.expires_at > c.now
           AND (c.idle = '0' OR s.last_seen_at + c.idle > c.now))
          OR EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                      WHERE rt.family_id = s.family_id AND rt.session_id = s.id
                        AND rt.revoked_at IS NULL AND rt.spent_at IS NULL
                        AND rt.expires_at > c.now))
   ORDER BY s.created_at, s.id;
$$;
COMMENT ON FUNCTION authctx.list_sessions(uuid) IS
  'a user''s live sessions, and the session of every login family that can still be refreshed; without secrets';

CREATE OR REPLACE FUNCTION authctx.cleanup() RETURNS bigint
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
    $c$(t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3
        OR ($2 > interval '0' AND t.last_seen_at + $2 < $1 - $3))
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
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys and expired WebAuthn challenges in small batches; returns rows removed';

REVOKE ALL ON FUNCTION
  authctx._revoked_by_user(timestamptz, uuid, timestamptz, uuid), authctx._issue_time(uuid),
  authctx._cleanup_margin(), authctx._family_lock_key(uuid), authctx._lock_family(uuid),
  authctx._holds_family_lock(uuid), authctx._revoke_family_rows(uuid, timestamptz),
  authctx._lock_membership(uuid, uuid), authctx._refresh_lock(uuid, uuid, uuid, timestamptz),
  authctx._refresh_pair(authctx.refresh_tokens, boolean)
FROM PUBLIC;

-- Login families whose session row an earlier cleanup() deleted while they
-- could still refresh get one back: a revoked placeholder whose verifier
-- matches no token, carrying the family's metadata, so that logout,
-- revoke_session and list_sessions reach every family that can refresh.
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, created_at,
                              last_seen_at, expires_at, revoked_at, metadata)
SELECT DISTINCT ON (rt.session_id)
       rt.session_id, rt.user_id, rt.tenant_id, rt.family_id,
       pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())),
       rt.created_at, rt.created_at, rt.created_at, pg_catalog.clock_timestamp(),
       coalesce((SELECT s.metadata FROM authctx.sessions s
                  WHERE s.family_id = rt.family_id
                  ORDER BY s.created_at DESC LIMIT 1), '{}'::jsonb)
  FROM authctx.refresh_tokens rt
 WHERE rt.revoked_at IS NULL AND rt.spent_at IS NULL
   AND rt.expires_at > pg_catalog.clock_timestamp()
   AND NOT EXISTS (SELECT 1 FROM authctx.sessions s WHERE s.id = rt.session_id)
 ORDER BY rt.session_id;
