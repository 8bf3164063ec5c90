-- ---------------------------------------------------------------------------
-- 40 identity: tenants, users, memberships, passwords, OAuth links.
--
-- Every function is SECURITY DEFINER with a pinned search_path and names
-- every object by schema, so no user-created object can stand in for ours.
-- Only authctx_manager (and authctx_admin, through membership) may call
-- them; authctx_app reaches passwords only through login.
--
-- Errors, always with a clear message that names no password or hash:
--   22023 invalid_parameter_value  bad slug, email, role, password, provider
--                                  or subject, or a required argument NULL
--   23505 unique_violation         duplicate slug, email, membership, or an
--                                  OAuth subject linked to another user
--   42704 undefined_object         unknown tenant or user, or no such
--                                  membership (management calls only)
--
-- Emails are one account when their keys are equal: authctx._email_key
-- (src/identity.c), the UTF-8 bytes of NFC(casefold(NFC(email))) with
-- Unicode's default, locale-free case folding.  The unique index on users
-- and every lookup by email (login, verify_password) use it, so neither
-- the database's collation or ctype nor the Unicode spelling (NFC or NFD)
-- of an email can make two accounts of one address.  The address itself is
-- stored as given.  In a database whose encoding is not UTF-8 the email is
-- converted to UTF-8 first; in SQL_ASCII it must be valid UTF-8 (22021).
--
-- Revocations (set_password, disable_user) lock the user's row and stamp
-- it through authctx._revoke_user_sessions (src/sql/50_session.sql, whose
-- header has the lock order and the liveness rule), so they win over a
-- login or refresh in flight whatever the order of commits.
-- ---------------------------------------------------------------------------

-- tables ----------------------------------------------------------------------
-- The identity tables (src/sql/20_tables.sql declared every table until
-- 0.2.0; each now sits with the functions that own it, columns in the same
-- order).  No privilege for PUBLIC or the roles on any of them.
CREATE TABLE authctx.tenants (
  id          uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  slug        text NOT NULL UNIQUE
              CHECK (slug OPERATOR(pg_catalog.~) '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.tenants IS 'tenants (organisations); slug is the human name used in URLs';

-- The identity of an email (src/identity.c): UTF-8 bytes of
-- NFC(casefold(NFC(email))), independent of the database's collation and
-- ctype.  Declared here because the unique index on users needs it.
CREATE FUNCTION authctx._email_key(email text) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_email_key'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._email_key(text) IS
  'internal: the normalised form of an email that uniqueness and lookup compare (NFC, Unicode default case folding, NFC; UTF-8 bytes)';
REVOKE ALL ON FUNCTION authctx._email_key(text) FROM PUBLIC;

-- sessions_revoked_before / sessions_revoked_except: the user's revocation
-- stamp (src/sql/50_session.sql): every session and refresh token of the
-- user issued at or before that time is revoked, except those of the one
-- login family named (set_password from the user's own session keeps it).
CREATE TABLE authctx.users (
  id            uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  email         text NOT NULL,
  display_name  text,
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  sessions_revoked_before  timestamptz,
  sessions_revoked_except  uuid,
  email_verified_at        timestamptz
);
CREATE UNIQUE INDEX users_email_key ON authctx.users (authctx._email_key(email));
COMMENT ON TABLE authctx.users IS 'users; email unique by authctx._email_key (Unicode NFC and case folding); disabled_at set when disabled; sessions_revoked_before: sessions and refresh tokens issued until then are revoked (except family sessions_revoked_except)';
COMMENT ON COLUMN authctx.users.email_verified_at IS
  'when the current email was verified (authctx.verify_email); NULL: not verified, and cleared when the email changes';

CREATE TABLE authctx.memberships (
  tenant_id   uuid NOT NULL REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  role        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user_idx ON authctx.memberships (user_id);
COMMENT ON TABLE authctx.memberships IS 'user in tenant with a role';

CREATE TABLE authctx.password_credentials (
  user_id     uuid PRIMARY KEY REFERENCES authctx.users (id) ON DELETE CASCADE,
  hash        text NOT NULL,          -- crypto_pwhash_str (argon2id) string
  updated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.password_credentials IS 'argon2id password hashes';

CREATE TABLE authctx.oauth_identities (
  provider    text NOT NULL,
  subject     text NOT NULL,
  user_id     uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_idx ON authctx.oauth_identities (user_id);
COMMENT ON TABLE authctx.oauth_identities IS 'OAuth/OIDC subjects linked to users; never matched by email';

-- per-database secret -------------------------------------------------------
-- One random key per database, made at installation: it keys the hash of
-- the per-account lock (src/identity.c), so that the advisory lock keys
-- every role can see in pg_locks do not tell which email is being tried.
-- Not in any dump (not a configuration table): a restored database makes
-- its own, and nothing stored depends on it.
CREATE TABLE authctx.database_secret (
  id      boolean PRIMARY KEY DEFAULT true CHECK (id),
  secret  bytea NOT NULL CHECK (pg_catalog.octet_length(secret) OPERATOR(pg_catalog.>=) 32)
);
INSERT INTO authctx.database_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));
COMMENT ON TABLE authctx.database_secret IS 'one random per-database key (keys the per-account lock); never dumped';

-- login throttling: consecutive failures per account, written out of band
CREATE TABLE authctx.login_throttle (
  user_id          uuid PRIMARY KEY REFERENCES authctx.users (id) ON DELETE CASCADE,
  failures         integer NOT NULL DEFAULT 0,
  last_failure_at  timestamptz,
  locked_until     timestamptz
);
COMMENT ON TABLE authctx.login_throttle IS 'consecutive failed logins and lockout (exponential back-off)';

REVOKE ALL ON TABLE authctx.tenants, authctx.users, authctx.memberships,
  authctx.password_credentials, authctx.oauth_identities, authctx.database_secret,
  authctx.login_throttle
FROM PUBLIC;

-- Password primitives (src/identity.c).  Internal: no grant to anyone; the
-- SECURITY DEFINER functions below call them as the extension owner.
CREATE FUNCTION authctx._password_hash(password text) RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_password_hash'
  LANGUAGE C VOLATILE STRICT COST 10000;
COMMENT ON FUNCTION authctx._password_hash(text) IS
  'internal: argon2id hash string of a password, after the length policy (22023)';

CREATE FUNCTION authctx._password_rehash(password text) RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_password_rehash'
  LANGUAGE C VOLATILE STRICT COST 10000;
COMMENT ON FUNCTION authctx._password_rehash(text) IS
  'internal: argon2id hash string with the current parameters, for the rehash after a successful verification (no minimum length)';

-- VOLATILE although deterministic: the time it takes is its point, and
-- must never be optimised away.
CREATE FUNCTION authctx._password_verify(hash text, password text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_password_verify'
  LANGUAGE C VOLATILE STRICT COST 10000;
COMMENT ON FUNCTION authctx._password_verify(text, text) IS
  'internal: true when the password matches the argon2id hash string';

CREATE FUNCTION authctx._password_needs_rehash(hash text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_password_needs_rehash'
  LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION authctx._password_needs_rehash(text) IS
  'internal: true when the hash was made with other parameters than authctx.password_opslimit / password_memlimit';

CREATE FUNCTION authctx._password_dummy_verify(password text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_password_dummy_verify'
  LANGUAGE C VOLATILE STRICT COST 10000;
COMMENT ON FUNCTION authctx._password_dummy_verify(text) IS
  'internal: costs one verification with the current parameters, returns false (unknown emails take as long as known ones)';

-- 64 bits of keyed BLAKE2b (src/identity.c): lock keys nobody without the
-- key can compute.
CREATE FUNCTION authctx._keyed_hash64(data bytea, key bytea) RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_keyed_hash64'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._keyed_hash64(bytea, bytea) IS
  'internal: the first 64 bits of keyed BLAKE2b of data (an advisory lock key)';

REVOKE ALL ON FUNCTION authctx._password_hash(text), authctx._password_rehash(text),
  authctx._password_verify(text, text), authctx._password_needs_rehash(text),
  authctx._password_dummy_verify(text), authctx._keyed_hash64(bytea, bytea) FROM PUBLIC;

-- A transaction advisory lock on a keyed hash of label: keyed with the
-- per-database secret, so that pg_locks does not tell what is locked (an
-- email being tried, a user's one-time tokens).  Every keyed lock
-- (_lock_account, _lock_one_time_scope) is this one rule.
CREATE FUNCTION authctx._lock_keyed(label bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lock bigint;
BEGIN
  SELECT authctx._keyed_hash64(_lock_keyed.label, s.secret)
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
COMMENT ON FUNCTION authctx._lock_keyed(bytea) IS
  'internal: a transaction advisory lock on the keyed hash (authctx.database_secret) of a label';
REVOKE ALL ON FUNCTION authctx._lock_keyed(bytea) FROM PUBLIC;

-- The per-account lock of password attempts: a transaction advisory lock
-- on the keyed hash of the email's key, taken for every email, known or
-- unknown, so that parallel attempts cost the same either way (keyed, so
-- that pg_locks does not tell which email is being tried).  Emails without
-- a key (NULL, or too long to be anyone's) share one lock.
CREATE FUNCTION authctx._lock_account(email text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._lock_keyed('authctx account '::bytea
                                OPERATOR(pg_catalog.||)
                                coalesce(authctx._email_key(_lock_account.email), ''::bytea));
END
$$;
COMMENT ON FUNCTION authctx._lock_account(text) IS
  'internal: the per-account lock of password attempts (a keyed hash of the email''s key), for known and unknown emails alike';
REVOKE ALL ON FUNCTION authctx._lock_account(text) FROM PUBLIC;

-- Record a failed login: count it toward the user's lockout when p_count
-- (a wrong password for an existing account) and audit login_failed with
-- its reason.  The lockout back-off, in one place (login_throttle is
-- identity's; the design is under Lockout in 50_session.sql's header).
-- Runs in the worker's transaction (login_attempt, login_failed, webauthn
-- attempts); p_record carries the caller's lockout settings (threshold,
-- base_delay, max_delay), method and db_role.
-- Returns {failures, locked_until} as far as known.
CREATE FUNCTION authctx._login_failure(p_user_id uuid, p_reason text, p_count boolean,
                                       p_record jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_threshold integer;
  v_base      double precision;
  v_max       double precision;
  v_failures  integer;
  v_locked    timestamptz;
BEGIN
  IF p_user_id IS NOT NULL AND coalesce(p_count, false) THEN
    v_threshold := greatest((p_record ->> 'threshold')::integer, 1);
    v_base := greatest((p_record ->> 'base_delay')::double precision, 1);
    v_max := greatest((p_record ->> 'max_delay')::double precision, v_base);
    -- The streak is forgotten after a quiet period of twice the longest
    -- lockout.  INSERT ... SELECT: a user deleted (or not yet committed)
    -- meanwhile simply gets no row.
    INSERT INTO authctx.login_throttle AS t (user_id, failures, last_failure_at)
    SELECT u.id, 1, v_now FROM authctx.users u WHERE u.id = p_user_id
    ON CONFLICT (user_id) DO UPDATE
      SET failures = CASE
                       WHEN t.last_failure_at < v_now - make_interval(secs => 2 * v_max)
                       THEN 1
                       ELSE t.failures + 1
                     END,
          last_failure_at = v_now
    RETURNING t.failures INTO v_failures;
    IF v_failures >= v_threshold THEN
      -- bounded exponential back-off: base * 2^(failures - threshold), at most max
      v_locked := v_now + make_interval(secs =>
                    least(v_base * power(2::double precision,
                                         least(v_failures - v_threshold, 30)),
                          v_max));
      UPDATE authctx.login_throttle t SET locked_until = v_locked
       WHERE t.user_id = p_user_id;
    END IF;
  END IF;
  PERFORM authctx._audit('login_failed', p_user_id, NULL, NULL,
                         jsonb_strip_nulls(jsonb_build_object(
                           'reason', p_reason,
                           'method', p_record ->> 'method',
                           'failures', v_failures,
                           'locked_until', v_locked)),
                         (p_record ->> 'db_role')::name, v_now);
  RETURN jsonb_strip_nulls(jsonb_build_object('failures', v_failures, 'locked_until', v_locked));
END
$$;
COMMENT ON FUNCTION authctx._login_failure(uuid, text, boolean, jsonb) IS
  'internal: count a failed login toward the lockout (when it counts) and audit login_failed; returns failures and locked_until';
REVOKE ALL ON FUNCTION authctx._login_failure(uuid, text, boolean, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Internal validation helpers.
-- ---------------------------------------------------------------------------

-- A tenant named by text is a uuid when it has the canonical 8-4-4-4-12
-- form, a slug otherwise; create_tenant refuses slugs of that form, so the
-- two never overlap.
CREATE FUNCTION authctx._resolve_tenant(tenant text) RETURNS uuid
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found_id uuid;
BEGIN
  IF _resolve_tenant.tenant OPERATOR(pg_catalog.~)
     '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
    SELECT t.id INTO found_id
      FROM authctx.tenants t
     WHERE t.id OPERATOR(pg_catalog.=) _resolve_tenant.tenant::uuid;
  ELSE
    SELECT t.id INTO found_id
      FROM authctx.tenants t
     WHERE t.slug OPERATOR(pg_catalog.=) _resolve_tenant.tenant;
  END IF;
  RETURN found_id;
END
$$;
COMMENT ON FUNCTION authctx._resolve_tenant(text) IS
  'internal: id of the tenant named by slug or uuid text, or NULL when there is none';

-- The resolver for management calls: unknown tenants are an error.
CREATE FUNCTION authctx._require_tenant(tenant text) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found_id uuid := authctx._resolve_tenant(_require_tenant.tenant);
BEGIN
  IF _require_tenant.tenant IS NULL THEN
    RAISE EXCEPTION 'tenant must not be null'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF found_id IS NULL THEN
    RAISE EXCEPTION 'tenant "%" does not exist', _require_tenant.tenant
      USING ERRCODE = 'undefined_object';
  END IF;
  RETURN found_id;
END
$$;
COMMENT ON FUNCTION authctx._require_tenant(text) IS
  'internal: like _resolve_tenant, but raises 42704 for an unknown tenant';

-- Management calls on a user that does not exist fail with 42704; the row
-- is locked so that a concurrent delete cannot slip in between.
CREATE FUNCTION authctx._require_user(user_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF _require_user.user_id IS NULL THEN
    RAISE EXCEPTION 'user id must not be null'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM 1 FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) _require_user.user_id
     FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % does not exist', _require_user.user_id
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._require_user(uuid) IS
  'internal: raises 42704 unless the user exists (and locks it against deletion)';

-- One rule for emails, shared by create_user and set_email.
CREATE FUNCTION authctx._check_email(email text) RETURNS void
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

-- Membership roles travel in the context (a name-sized field): keep them
-- short and non-empty.
CREATE FUNCTION authctx._check_role(role text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF _check_role.role IS NULL
     OR _check_role.role OPERATOR(pg_catalog.=) ''
     OR pg_catalog.octet_length(_check_role.role) OPERATOR(pg_catalog.>) 63 THEN
    RAISE EXCEPTION 'invalid membership role'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A role is a non-empty text of at most 63 bytes.';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._check_role(text) IS
  'internal: raises 22023 unless the text is a valid membership role';

REVOKE ALL ON FUNCTION authctx._resolve_tenant(text), authctx._require_tenant(text),
  authctx._require_user(uuid), authctx._check_email(text), authctx._check_role(text)
  FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Tenants and users.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.create_tenant(slug text, name text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  new_id uuid;
BEGIN
  IF create_tenant.slug IS NULL
     OR create_tenant.slug OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid tenant slug'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A slug has 1 to 63 characters from a-z, 0-9 and "-", and starts with a letter or digit.';
  END IF;
  -- A slug shaped like a uuid would make "tenant text" arguments ambiguous.
  IF create_tenant.slug OPERATOR(pg_catalog.~)
     '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
    RAISE EXCEPTION 'invalid tenant slug'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A slug must not have the form of a uuid.';
  END IF;

  INSERT INTO authctx.tenants AS t (slug, name)
  VALUES (create_tenant.slug, create_tenant.name)
  ON CONFLICT DO NOTHING
  RETURNING t.id INTO new_id;

  IF new_id IS NULL THEN
    RAISE EXCEPTION 'tenant "%" already exists', create_tenant.slug
      USING ERRCODE = 'unique_violation';
  END IF;
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION authctx.create_tenant(text, text) IS
  'create a tenant; slug matches ^[a-z0-9][a-z0-9-]{0,62}$ (22023), unique (23505); returns its id';

CREATE FUNCTION authctx.create_user(email text, display_name text DEFAULT NULL)
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

CREATE FUNCTION authctx.set_email(user_id uuid, email text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._check_email(set_email.email);
  PERFORM authctx._require_user(set_email.user_id);
  BEGIN
    -- a new address is not verified (verify_email, 68_flows.sql)
    UPDATE authctx.users AS u
       SET email = set_email.email,
           email_verified_at = CASE
             WHEN authctx._email_key(u.email) OPERATOR(pg_catalog.=) authctx._email_key(set_email.email)
             THEN u.email_verified_at END
     WHERE u.id OPERATOR(pg_catalog.=) set_email.user_id;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END;
END
$$;
COMMENT ON FUNCTION authctx.set_email(uuid, text) IS
  'change a user''s email (unique after Unicode normalization and case folding); sessions are untouched; a different address is no longer verified';

CREATE FUNCTION authctx.disable_user(user_id uuid)
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

CREATE FUNCTION authctx.enable_user(user_id uuid)
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

-- ---------------------------------------------------------------------------
-- Memberships.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.add_member(tenant text, user_id uuid, role text DEFAULT 'member')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  tid uuid;
BEGIN
  PERFORM authctx._check_role(add_member.role);
  tid := authctx._require_tenant(add_member.tenant);
  PERFORM authctx._require_user(add_member.user_id);

  INSERT INTO authctx.memberships (tenant_id, user_id, role)
  VALUES (tid, add_member.user_id, add_member.role)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % is already a member of tenant "%"', add_member.user_id, add_member.tenant
      USING ERRCODE = 'unique_violation',
            HINT = 'Use set_member_role to change the role.';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.add_member(text, uuid, text) IS
  'make a user a member of a tenant (slug or uuid text) with a role; 23505 if already a member';

CREATE FUNCTION authctx.set_member_role(tenant text, user_id uuid, role text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  tid uuid;
BEGIN
  PERFORM authctx._check_role(set_member_role.role);
  tid := authctx._require_tenant(set_member_role.tenant);
  PERFORM authctx._require_user(set_member_role.user_id);

  UPDATE authctx.memberships AS m
     SET role = set_member_role.role
   WHERE m.tenant_id OPERATOR(pg_catalog.=) tid
     AND m.user_id OPERATOR(pg_catalog.=) set_member_role.user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % is not a member of tenant "%"', set_member_role.user_id, set_member_role.tenant
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.set_member_role(text, uuid, text) IS
  'change a member''s role in a tenant; 42704 if not a member';

CREATE FUNCTION authctx.remove_member(tenant text, user_id uuid)
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

-- ---------------------------------------------------------------------------
-- Passwords.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.set_password(user_id uuid, password text)
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

CREATE FUNCTION authctx.verify_password(email text, password text)
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

-- ---------------------------------------------------------------------------
-- OAuth / OIDC identities: matched by (provider, subject), never by email.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.link_identity(user_id uuid, provider text, subject text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  owner_id uuid;
BEGIN
  IF link_identity.provider IS NULL OR link_identity.provider OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'identity provider must not be empty'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF link_identity.subject IS NULL OR link_identity.subject OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'identity subject must not be empty'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM authctx._require_user(link_identity.user_id);

  INSERT INTO authctx.oauth_identities (provider, subject, user_id)
  VALUES (link_identity.provider, link_identity.subject, link_identity.user_id)
  ON CONFLICT DO NOTHING;
  IF FOUND THEN
    RETURN;
  END IF;

  SELECT o.user_id INTO owner_id
    FROM authctx.oauth_identities o
   WHERE o.provider OPERATOR(pg_catalog.=) link_identity.provider
     AND o.subject OPERATOR(pg_catalog.=) link_identity.subject;
  IF owner_id IS DISTINCT FROM link_identity.user_id THEN
    RAISE EXCEPTION 'this % identity is already linked to another user', link_identity.provider
      USING ERRCODE = 'unique_violation';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.link_identity(uuid, text, text) IS
  'link an OAuth/OIDC (provider, subject) to a user; idempotent for the same user, 23505 if linked to another';

CREATE FUNCTION authctx.find_identity(provider text, subject text)
RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  uid uuid;
BEGIN
  SELECT o.user_id INTO uid
    FROM authctx.oauth_identities o
    JOIN authctx.users u ON u.id OPERATOR(pg_catalog.=) o.user_id
   WHERE o.provider OPERATOR(pg_catalog.=) find_identity.provider
     AND o.subject OPERATOR(pg_catalog.=) find_identity.subject
     AND u.disabled_at IS NULL;
  RETURN uid;
END
$$;
COMMENT ON FUNCTION authctx.find_identity(text, text) IS
  'user linked to an OAuth/OIDC (provider, subject), or NULL (also for a disabled user); never matches by email';

-- ---------------------------------------------------------------------------
-- Privileges: identity management is for authctx_manager (authctx_admin
-- inherits it); authctx_app gets nothing here.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
  authctx.create_tenant(text, text),
  authctx.create_user(text, text),
  authctx.set_email(uuid, text),
  authctx.disable_user(uuid),
  authctx.enable_user(uuid),
  authctx.add_member(text, uuid, text),
  authctx.set_member_role(text, uuid, text),
  authctx.remove_member(text, uuid),
  authctx.set_password(uuid, text),
  authctx.verify_password(text, text),
  authctx.link_identity(uuid, text, text),
  authctx.find_identity(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  authctx.create_tenant(text, text),
  authctx.create_user(text, text),
  authctx.set_email(uuid, text),
  authctx.disable_user(uuid),
  authctx.enable_user(uuid),
  authctx.add_member(text, uuid, text),
  authctx.set_member_role(text, uuid, text),
  authctx.remove_member(text, uuid),
  authctx.set_password(uuid, text),
  authctx.verify_password(text, text),
  authctx.link_identity(uuid, text, text),
  authctx.find_identity(text, text)
TO authctx_manager;

-- ---------------------------------------------------------------------------
-- Tenant discovery: which tenants a user belongs to, and which exist.
--
-- A user with several memberships logs in without a tenant (login_result's
-- tenant_id is NULL); the application then calls my_tenants() under
-- auth_begin(token), shows the list, and calls auth_begin(token, chosen).
-- my_tenants() trusts only the context auth_begin published in this
-- transaction: it asks authctx.current(), whose C accessor answers "no
-- context" for anything else (a value that did not come from auth_begin in
-- this transaction, or one left from an earlier transaction).
--
-- An API key acts in its own tenant only, so under an API key my_tenants()
-- lists that tenant alone: a key handed to a machine does not reveal the
-- other tenants its user belongs to.
--
-- All three only read, so they work in a read-only transaction and on a
-- standby; like list_sessions, list_memberships of an unknown user is
-- empty.  my_tenants() without a context raises 28000.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.list_memberships(user_id uuid)
RETURNS TABLE (tenant_id uuid, slug text, name text, role text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.tenant_id, t.slug, t.name, m.role, m.created_at
    FROM authctx.memberships m
    JOIN authctx.tenants t ON t.id OPERATOR(pg_catalog.=) m.tenant_id
   WHERE m.user_id OPERATOR(pg_catalog.=) list_memberships.user_id
   ORDER BY t.slug
$$;
COMMENT ON FUNCTION authctx.list_memberships(uuid) IS
  'the tenants a user belongs to, with the user''s role there and when the membership began (none for an unknown user, as list_sessions)';

CREATE FUNCTION authctx.my_tenants()
RETURNS TABLE (tenant_id uuid, slug text, name text, role text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  ctx authctx.context := authctx.current();
BEGIN
  IF ctx.user_id IS NULL THEN
    RAISE EXCEPTION 'no authentication context in this transaction'
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Call auth_begin(token) earlier in the same transaction; a session without a tenant is enough.';
  END IF;
  RETURN QUERY
    SELECT l.* FROM authctx.list_memberships(ctx.user_id) l
     WHERE ctx.auth_method OPERATOR(pg_catalog.<>) 'api_key'
        OR l.tenant_id OPERATOR(pg_catalog.=) ctx.tenant_id
     ORDER BY l.slug;
END
$$;
COMMENT ON FUNCTION authctx.my_tenants() IS
  'the tenants the user of this transaction''s auth_begin context belongs to (an API key: its own tenant only); 28000 without a context';

CREATE FUNCTION authctx.list_tenants()
RETURNS TABLE (tenant_id uuid, slug text, name text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT t.id, t.slug, t.name, t.created_at
    FROM authctx.tenants t
   ORDER BY t.slug
$$;
COMMENT ON FUNCTION authctx.list_tenants() IS 'every tenant';

REVOKE ALL ON FUNCTION authctx.list_memberships(uuid), authctx.my_tenants(),
  authctx.list_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.list_memberships(uuid), authctx.list_tenants()
  TO authctx_manager;
GRANT EXECUTE ON FUNCTION authctx.my_tenants() TO authctx_app;
