-- authctx install script, built from src/sql/*.sql in name order.
-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION authctx" to load this file. \quit

-- ---------------------------------------------------------------------------
-- 00 setup: the schema must be ours, and the roles exist.
-- ---------------------------------------------------------------------------

-- A hostile user who pre-created schema authctx would own every object we
-- put in it.  Refuse to install into a schema not owned by a superuser.
DO $setup$
BEGIN
  IF EXISTS (SELECT 1
               FROM pg_catalog.pg_namespace n
               JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
              WHERE n.nspname OPERATOR(pg_catalog.=) 'authctx'
                AND NOT r.rolsuper) THEN
    RAISE EXCEPTION 'schema "authctx" exists and is not owned by a superuser'
      USING ERRCODE = '42501',
            HINT = 'Drop or rename that schema, then run CREATE EXTENSION authctx again.';
  END IF;
END
$setup$;

-- Roles are cluster-wide: created if missing, reused if present.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_app') THEN
    CREATE ROLE authctx_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_manager') THEN
    CREATE ROLE authctx_manager NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_admin') THEN
    CREATE ROLE authctx_admin NOLOGIN;
  END IF;
END
$roles$;

-- manager may do what app may; admin what manager may.
GRANT authctx_app TO authctx_manager;
GRANT authctx_manager TO authctx_admin;

REVOKE ALL ON SCHEMA authctx FROM PUBLIC;
GRANT USAGE ON SCHEMA authctx TO PUBLIC;
-- ---------------------------------------------------------------------------
-- 10 types: authctx.token (C), authctx.context, authctx.login_result
-- ---------------------------------------------------------------------------

CREATE TYPE authctx.token;

CREATE FUNCTION authctx.token_in(cstring) RETURNS authctx.token
  AS 'MODULE_PATHNAME', 'authctx_token_in'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION authctx.token_out(authctx.token) RETURNS cstring
  AS 'MODULE_PATHNAME', 'authctx_token_out'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION authctx.token_recv(internal) RETURNS authctx.token
  AS 'MODULE_PATHNAME', 'authctx_token_recv'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION authctx.token_send(authctx.token) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_token_send'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE authctx.token (
  INTERNALLENGTH = 49,
  INPUT = authctx.token_in,
  OUTPUT = authctx.token_out,
  RECEIVE = authctx.token_recv,
  SEND = authctx.token_send,
  ALIGNMENT = char,
  STORAGE = plain
);
COMMENT ON TYPE authctx.token IS
  'bearer token: kind prefix (axs_ session, axr_ refresh, axk_ API key), public id, 256-bit secret, checksum';

-- Internal token helpers: callable only by the extension's own functions.
CREATE FUNCTION authctx._token_new(kind text) RETURNS authctx.token
  AS 'MODULE_PATHNAME', 'authctx_token_new'
  LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._token_new(text) IS 'internal: a fresh random token of kind session, refresh or api_key';
CREATE FUNCTION authctx._token_id(authctx.token) RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_token_id'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._token_id(authctx.token) IS 'internal: public id of a token';
CREATE FUNCTION authctx._token_kind(authctx.token) RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_token_kind'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._token_kind(authctx.token) IS 'internal: kind of a token';
-- STABLE, not IMMUTABLE: the result depends on authctx.token_pepper.
CREATE FUNCTION authctx._token_verifier(authctx.token) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_token_verifier'
  LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._token_verifier(authctx.token) IS 'internal: the stored verifier (keyed BLAKE2b) of a token';
REVOKE ALL ON FUNCTION authctx._token_new(text), authctx._token_id(authctx.token),
  authctx._token_kind(authctx.token), authctx._token_verifier(authctx.token) FROM PUBLIC;

CREATE TYPE authctx.context AS (
  user_id     uuid,
  tenant_id   uuid,
  role        text,
  session_id  uuid,
  auth_method text,
  expires_at  timestamptz
);
COMMENT ON TYPE authctx.context IS 'the authentication context of one transaction, as published by auth_begin';

CREATE TYPE authctx.login_result AS (
  session_token authctx.token,
  refresh_token authctx.token,
  session_id    uuid,
  tenant_id     uuid,
  expires_at    timestamptz
);
COMMENT ON TYPE authctx.login_result IS 'what login, refresh and login_webauthn return';
-- ---------------------------------------------------------------------------
-- 20 tables.  Every table lives in schema authctx and is reachable only
-- through functions: PUBLIC and the authctx_* roles get no privilege on any
-- of them (audit_log excepted: authctx_admin may read it).
--
-- Shaped for a later distributed engine: tenants could be a reference
-- table, memberships distributed by tenant_id, identity tables by user_id.
-- ---------------------------------------------------------------------------

-- identity ------------------------------------------------------------------
CREATE TABLE authctx.tenants (
  id          uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  slug        text NOT NULL UNIQUE
              CHECK (slug OPERATOR(pg_catalog.~) '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.tenants IS 'tenants (organisations); slug is the human name used in URLs';

CREATE TABLE authctx.users (
  id            uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  email         text NOT NULL,
  display_name  text,
  disabled_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE UNIQUE INDEX users_email_lower_key ON authctx.users (pg_catalog.lower(email));
COMMENT ON TABLE authctx.users IS 'users; email unique case-insensitively; disabled_at set when disabled';

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

CREATE TABLE authctx.webauthn_credentials (
  credential_id bytea PRIMARY KEY,
  user_id       uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  public_key    bytea NOT NULL,       -- COSE_Key as registered
  alg           integer NOT NULL,     -- COSE algorithm: -8 EdDSA, -7 ES256
  sign_count    bigint NOT NULL DEFAULT 0,
  name          text,
  clone_suspected_at timestamptz,   -- set when the counter went backwards; refused from then on
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  last_used_at  timestamptz
);
CREATE INDEX webauthn_credentials_user_idx ON authctx.webauthn_credentials (user_id);
COMMENT ON TABLE authctx.webauthn_credentials IS 'WebAuthn (passkey) public keys';

CREATE TABLE authctx.webauthn_challenges (
  challenge   bytea PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE authctx.webauthn_challenges IS 'issued, unspent WebAuthn challenges (deleted when spent)';

-- login throttling: consecutive failures per account, written out of band
CREATE TABLE authctx.login_throttle (
  user_id          uuid PRIMARY KEY REFERENCES authctx.users (id) ON DELETE CASCADE,
  failures         integer NOT NULL DEFAULT 0,
  last_failure_at  timestamptz,
  locked_until     timestamptz
);
COMMENT ON TABLE authctx.login_throttle IS 'consecutive failed logins and lockout (exponential back-off)';

-- sessions ------------------------------------------------------------------
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
  metadata      jsonb NOT NULL DEFAULT '{}'
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
  revoked_at  timestamptz
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

-- audit ---------------------------------------------------------------------
CREATE TABLE authctx.audit_log (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  event        text NOT NULL,
  user_id      uuid,
  tenant_id    uuid,
  session_id   uuid,
  db_role      name NOT NULL DEFAULT pg_catalog.session_user(),
  detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred_idx ON authctx.audit_log (occurred_at);
COMMENT ON TABLE authctx.audit_log IS 'security events; never stores a token, secret or password';

-- No privilege on any table for PUBLIC or the roles; admins read the log.
REVOKE ALL ON ALL TABLES IN SCHEMA authctx FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA authctx FROM PUBLIC;
GRANT SELECT ON authctx.audit_log TO authctx_admin;

-- Internal: append one audit event (SECURITY DEFINER callers only).
-- PL/pgSQL rather than SQL: its INSERT plan is cached per backend, where a
-- SQL function called from PL/pgSQL is parsed and planned on every call
-- (a third of the cost of a revocation).
CREATE FUNCTION authctx._audit(event text, user_id uuid, tenant_id uuid,
                               session_id uuid, detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  INSERT INTO authctx.audit_log (event, user_id, tenant_id, session_id, db_role, detail)
  VALUES (_audit.event, _audit.user_id, _audit.tenant_id, _audit.session_id,
          pg_catalog.session_user(), COALESCE(_audit.detail, '{}'::jsonb));
END
$$;
COMMENT ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb) IS 'internal: append an audit event';
REVOKE ALL ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb) FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- 30 context accessors: STABLE, PARALLEL SAFE, callable in RLS policies by
-- every role.  NULL (false) without a context, so policies fail closed.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.user_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_user_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.user_id() IS 'user of this transaction''s context, or NULL';

CREATE FUNCTION authctx.tenant_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_tenant_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.tenant_id() IS 'tenant of this transaction''s context, or NULL (raises 28000 when authctx.missing_context = error)';

CREATE FUNCTION authctx.role() RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.role() IS 'membership role of the context''s user in its tenant, or NULL';

CREATE FUNCTION authctx.session_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_session_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.session_id() IS 'session (or API key) id of this transaction''s context, or NULL';

CREATE FUNCTION authctx.current() RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_current' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.current() IS 'the whole context, or NULL';

CREATE FUNCTION authctx.has_role(text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_has_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.has_role(text) IS 'true when the context''s membership role equals the argument';

CREATE FUNCTION authctx.has_scope(text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_has_scope' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.has_scope(text) IS 'true for sessions; for API keys, true when the key has the scope';

CREATE FUNCTION authctx.is_authenticated() RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_is_authenticated' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.is_authenticated() IS 'true when auth_begin succeeded in this transaction';

CREATE FUNCTION authctx.admin_bypass() RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_admin_bypass' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.admin_bypass() IS 'true when admin_begin is active in this transaction';

-- Accessors are the only functions PUBLIC may execute.
GRANT EXECUTE ON FUNCTION authctx.user_id(), authctx.tenant_id(), authctx.role(),
  authctx.session_id(), authctx.current(), authctx.has_role(text),
  authctx.has_scope(text), authctx.is_authenticated() TO PUBLIC;
REVOKE ALL ON FUNCTION authctx.admin_bypass() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.admin_bypass() TO authctx_admin;
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
-- ---------------------------------------------------------------------------

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

REVOKE ALL ON FUNCTION authctx._password_hash(text), authctx._password_rehash(text),
  authctx._password_verify(text, text), authctx._password_needs_rehash(text),
  authctx._password_dummy_verify(text) FROM PUBLIC;

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
     OR _check_email.email OPERATOR(pg_catalog.!~) '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$' THEN
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
            DETAIL = 'Email addresses are compared case-insensitively.';
  END IF;
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION authctx.create_user(text, text) IS
  'create a user; email unique case-insensitively (23505), invalid email 22023; returns its id';

CREATE FUNCTION authctx.set_email(user_id uuid, email text)
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
            DETAIL = 'Email addresses are compared case-insensitively.';
  END;
END
$$;
COMMENT ON FUNCTION authctx.set_email(uuid, text) IS
  'change a user''s email (unique case-insensitively); sessions are untouched';

CREATE FUNCTION authctx.disable_user(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(disable_user.user_id);
  -- auth_begin checks users.disabled_at itself: no session needs revoking.
  UPDATE authctx.users AS u
     SET disabled_at = pg_catalog.clock_timestamp()
   WHERE u.id OPERATOR(pg_catalog.=) disable_user.user_id
     AND u.disabled_at IS NULL;
END
$$;
COMMENT ON FUNCTION authctx.disable_user(uuid) IS
  'disable a user: no login, and every session and API key stops working (idempotent)';

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
  'enable a disabled user again (idempotent)';

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

  -- Sessions stay: auth_begin refuses them for this tenant from now on.
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
  new_hash := authctx._password_hash(set_password.password);

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
  -- login family and repeats until a concurrent refresh cannot slip by)
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
   WHERE pg_catalog.lower(u.email) OPERATOR(pg_catalog.=) pg_catalog.lower(verify_password.email);

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
  'id of the user with this email (case-insensitive) and password, or NULL (unknown email, disabled user, no or wrong password); rehashes when the parameters changed';

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
  IF array_position(v_scopes, NULL) IS NOT NULL OR '' = ANY (v_scopes) THEN
    RAISE EXCEPTION 'scopes must not be null or empty' USING ERRCODE = '22023';
  END IF;
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
-- ---------------------------------------------------------------------------
-- 55 worker: records that must outlive the caller's transaction.
--
-- authctx._autonomous(kind, payload) hands a record to a background worker
-- (src/worker.c) that runs authctx._autonomous_apply(kind, payload) in a
-- transaction of its own, as the bootstrap superuser, and waits for it.
-- The caller's later ERROR or ROLLBACK cannot undo what the worker
-- committed.  Kinds:
--
--   audit          {event, user_id, tenant_id, session_id, db_role, detail}
--                  one audit_log row (admin_begin's admin_bypass)
--   login_failed   {user_id, reason, count, threshold, base_delay,
--                   max_delay, db_role}
--                  count the failure toward the lockout (when count is
--                  true and the user exists) and audit login_failed
--   refresh_reuse  {family_id, user_id, tenant_id, session_id, token_id,
--                   db_role}
--                  revoke every session and refresh token of the family and
--                  audit refresh_reuse
--   seen           {entries: [{k: "s"|"k", id, t}]}, t in microseconds since
--                  the Unix epoch: last_seen_at / last_used_at, only ever
--                  moved forward
--
-- The payload is built by the extension's own functions: the caller's
-- settings (lockout) and identity (db_role) travel in it, because the
-- worker is another backend and sees neither.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx._autonomous(kind text, payload jsonb) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_autonomous'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._autonomous(text, jsonb) IS
  'internal: apply a record in a background worker''s own transaction and wait; false (with a WARNING) if it could not be written';
REVOKE ALL ON FUNCTION authctx._autonomous(text, jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_user      uuid;
  v_role      name := coalesce(payload ->> 'db_role', session_user::text);
  v_failures  integer;
  v_threshold integer;
  v_base      double precision;
  v_max       double precision;
  v_locked    timestamptz;
  v_family    uuid;
  v_sessions  integer;
  v_kind      text;
  v_ids       uuid[];
  v_ats       timestamptz[];
BEGIN
  IF kind = 'audit' THEN
    IF coalesce(payload ->> 'event', '') = '' THEN
      RAISE EXCEPTION 'audit record without an event' USING ERRCODE = '22023';
    END IF;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now,
            payload ->> 'event',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            coalesce(payload -> 'detail', '{}'::jsonb));

  ELSIF kind = 'login_failed' THEN
    v_user := (payload ->> 'user_id')::uuid;
    IF v_user IS NOT NULL AND coalesce((payload ->> 'count')::boolean, false) THEN
      v_threshold := greatest((payload ->> 'threshold')::integer, 1);
      v_base := greatest((payload ->> 'base_delay')::double precision, 1);
      v_max := greatest((payload ->> 'max_delay')::double precision, v_base);
      -- The streak is forgotten after a quiet period of twice the longest
      -- lockout.  INSERT ... SELECT: a user deleted (or not yet committed)
      -- meanwhile simply gets no row.
      INSERT INTO authctx.login_throttle AS t (user_id, failures, last_failure_at)
      SELECT u.id, 1, v_now FROM authctx.users u WHERE u.id = v_user
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
         WHERE t.user_id = v_user;
      END IF;
    END IF;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
    VALUES (v_now, 'login_failed', v_user, v_role,
            jsonb_strip_nulls(jsonb_build_object(
              'reason', payload ->> 'reason',
              'method', payload ->> 'method',
              'failures', v_failures,
              'locked_until', v_locked)));

  ELSIF kind = 'webauthn_failed' THEN
    -- a failed passkey attempt: spend its challenge, mark a suspected clone,
    -- and audit (as login_failed for a login)
    IF payload ->> 'challenge' IS NOT NULL THEN
      DELETE FROM authctx.webauthn_challenges c
       WHERE c.challenge = decode(payload ->> 'challenge', 'hex');
    END IF;
    IF coalesce((payload ->> 'clone')::boolean, false) THEN
      UPDATE authctx.webauthn_credentials c
         SET clone_suspected_at = coalesce(c.clone_suspected_at, v_now)
       WHERE c.credential_id = decode(payload ->> 'credential_id', 'hex');
      INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
      VALUES (v_now, 'webauthn_clone_suspected', (payload ->> 'user_id')::uuid, v_role,
              jsonb_build_object('credential_id', payload ->> 'credential_id',
                                 'stored_count', (payload ->> 'stored_count')::bigint,
                                 'presented_count', (payload ->> 'presented_count')::bigint));
    END IF;
    IF coalesce((payload ->> 'login')::boolean, false) THEN
      PERFORM authctx._autonomous_apply('login_failed', payload);
    ELSE
      INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
      VALUES (v_now, 'webauthn_failed', (payload ->> 'user_id')::uuid, v_role,
              jsonb_build_object('reason', payload ->> 'reason',
                                 'credential_id', payload ->> 'credential_id'));
    END IF;

  ELSIF kind = 'refresh_reuse' THEN
    v_family := (payload ->> 'family_id')::uuid;
    IF v_family IS NULL THEN
      RAISE EXCEPTION 'refresh_reuse record without a family' USING ERRCODE = '22023';
    END IF;
    SELECT f.sessions INTO v_sessions FROM authctx._revoke_family(v_family, v_now) f;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now, 'refresh_reuse',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            jsonb_build_object(
              'family_id', v_family,
              'refresh_token_id', payload ->> 'token_id',
              'sessions_revoked', v_sessions));

  ELSIF kind = 'seen' THEN
    -- Last-seen (sessions) and last-used (API keys) times, moved forward
    -- only.  The payload is parsed once per kind.  The write never waits for
    -- a row lock: a row that anyone else holds (a revocation, cleanup,
    -- another batch) is skipped and keeps its time, which is a hint at most
    -- an interval behind, so this transaction can take part in no deadlock.
    -- Each row is locked through its primary key (the locking subquery in
    -- LATERAL keeps the plan a nested loop of index probes; a join would
    -- let the planner hash the whole table) and then updated by its ctid.
    FOREACH v_kind IN ARRAY ARRAY['s', 'k'] LOOP
      SELECT coalesce(array_agg(n.id ORDER BY n.id), '{}'),
             coalesce(array_agg(n.at ORDER BY n.id), '{}')
        INTO v_ids, v_ats
        FROM (SELECT (e ->> 'id')::uuid AS id,
                     max(to_timestamp((e ->> 't')::numeric / 1000000)) AS at
                FROM jsonb_array_elements(payload -> 'entries') e
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

  ELSE
    RAISE EXCEPTION 'unknown autonomous record kind' USING ERRCODE = '22023';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._autonomous_apply(text, jsonb) IS
  'internal: what the autonomous worker runs in its own transaction (audit, login_failed, refresh_reuse, seen)';
REVOKE ALL ON FUNCTION authctx._autonomous_apply(text, jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._seen_stats(
    OUT queued bigint, OUT pending bigint, OUT batches bigint,
    OUT written bigint, OUT failed bigint, OUT overflowed bigint)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_seen_stats'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._seen_stats() IS
  'internal: cluster-wide counters of the shared last-seen queue (all zero without shared_preload_libraries)';
REVOKE ALL ON FUNCTION authctx._seen_stats() FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- 60 webauthn: passkeys.  Challenges, credential registration, assertion
-- verification and login.  The cryptography and the COSE/CBOR parsing are in
-- C (src/webauthn.c); the flow is here.
--
-- Order of checks in _webauthn_verify, each failure answering NULL with a
-- reason that only the audit log sees:
--   clientDataJSON is a JSON object whose challenge decodes (base64url) to a
--   challenge issued here -> the challenge is spent (deleted) now, whatever
--   follows -> unexpired -> type is "webauthn.get" -> origin matches ->
--   credential known -> user not disabled -> rpIdHash, user-present flag and
--   signature (C) -> the signature counter grows -> counter and last use
--   recorded.
--
-- Spending and rollback.  The contract says the challenge is spent by the
-- attempt, success or not, and that a counter that does not grow marks the
-- credential as possibly cloned and refuses it.  Both must hold although
-- login_webauthn raises 28P01, which rolls the caller's transaction back.
-- So _webauthn_attempt runs the verification in a subtransaction, rolls it
-- back on failure (releasing every row lock it took), and hands the lasting
-- effects to a background worker (authctx._autonomous kind webauthn_failed):
-- delete the challenge, set clone_suspected_at on the credential (it is
-- refused from then on; register a new passkey to recover), and write the
-- audit record: webauthn_clone_suspected, and login_failed for a login or
-- webauthn_failed for verify_webauthn.  A success commits its spend and the
-- new counter with the caller's transaction.  A challenge issued inside the
-- caller's own still-open transaction is invisible to the worker and is not
-- spent by a failure (applications issue and use challenges in separate
-- requests).
--
-- Passkey failures are audited as login_failed with method "webauthn" but
-- never count toward the password lockout (there is nothing to guess).
-- ---------------------------------------------------------------------------

-- webauthn_challenge() removes a few expired challenges on each call.
CREATE INDEX webauthn_challenges_expires_idx
  ON authctx.webauthn_challenges (expires_at);

-- C helpers ------------------------------------------------------------------

CREATE FUNCTION authctx._webauthn_key_alg(public_key bytea) RETURNS integer
  AS 'MODULE_PATHNAME', 'authctx_webauthn_key_alg'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_key_alg(bytea) IS
  'internal: COSE algorithm (-8 EdDSA, -7 ES256) of a strictly parsed and validated COSE_Key; anything else raises 22023';

CREATE FUNCTION authctx._webauthn_check_assertion(public_key bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text) RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_webauthn_check_assertion'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_check_assertion(bytea, bytea, bytea, bytea, text) IS
  'internal: the signature counter when rpIdHash, user-present flag and signature check out; else -1 malformed, -2 rp_id, -3 user not present, -4 signature';

CREATE FUNCTION authctx._webauthn_b64url_decode(encoded text) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_webauthn_b64url_decode'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_b64url_decode(text) IS
  'internal: canonical unpadded base64url to bytes, or NULL';

-- challenges -----------------------------------------------------------------

CREATE FUNCTION authctx.webauthn_challenge() RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_webauthn_challenge'
  LANGUAGE C VOLATILE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION authctx.webauthn_challenge() IS
  'a new WebAuthn challenge: 32 random bytes, single use, valid for authctx.webauthn_challenge_ttl';

-- registration ---------------------------------------------------------------

CREATE FUNCTION authctx.add_webauthn_credential(user_id uuid,
    credential_id bytea, public_key bytea, sign_count bigint DEFAULT 0,
    name text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_alg integer;
BEGIN
  IF add_webauthn_credential.user_id IS NULL
     OR add_webauthn_credential.credential_id IS NULL
     OR add_webauthn_credential.public_key IS NULL
     OR add_webauthn_credential.sign_count IS NULL THEN
    RAISE EXCEPTION 'user_id, credential_id, public_key and sign_count must not be null'
      USING ERRCODE = '22004';
  END IF;
  -- WebAuthn credential ids are at most 1023 bytes
  IF pg_catalog.octet_length(add_webauthn_credential.credential_id) NOT BETWEEN 1 AND 1023 THEN
    RAISE EXCEPTION 'invalid webauthn credential id'
      USING ERRCODE = '22023',
            DETAIL = 'A credential id is 1 to 1023 bytes long.';
  END IF;
  IF add_webauthn_credential.sign_count NOT BETWEEN 0 AND 4294967295 THEN
    RAISE EXCEPTION 'invalid webauthn signature counter'
      USING ERRCODE = '22023',
            DETAIL = 'The signature counter is an unsigned 32-bit number.';
  END IF;

  v_alg := authctx._webauthn_key_alg(add_webauthn_credential.public_key);

  PERFORM 1 FROM authctx.users u
    WHERE u.id = add_webauthn_credential.user_id
    FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user does not exist' USING ERRCODE = '42704';
  END IF;

  INSERT INTO authctx.webauthn_credentials
         (credential_id, user_id, public_key, alg, sign_count, name)
  VALUES (add_webauthn_credential.credential_id, add_webauthn_credential.user_id,
          add_webauthn_credential.public_key, v_alg,
          add_webauthn_credential.sign_count, add_webauthn_credential.name)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'webauthn credential already registered' USING ERRCODE = '23505';
  END IF;

  PERFORM authctx._audit('webauthn_credential_added', add_webauthn_credential.user_id,
                         NULL, NULL,
                         pg_catalog.jsonb_build_object('alg', v_alg,
                                                       'name', add_webauthn_credential.name));
END
$$;
COMMENT ON FUNCTION authctx.add_webauthn_credential(uuid, bytea, bytea, bigint, text) IS
  'register a passkey: its credential id and COSE_Key public key (EdDSA or ES256 only; anything else raises 22023)';

-- verification ---------------------------------------------------------------

-- The whole check, with the failure reason for the audit log.  credential_user
-- is the credential's owner whenever the credential was found.
CREATE FUNCTION authctx._webauthn_verify(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text,
    OUT verified_user uuid, OUT credential_user uuid, OUT failure text,
    OUT challenge bytea, OUT stored_count bigint, OUT presented_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_client   jsonb;
  v_chal     bytea;
  v_expires  timestamptz;
  v_cred     record;
  v_counter  bigint;
BEGIN
  failure := 'malformed';
  IF p_credential_id IS NULL OR p_authenticator_data IS NULL
     OR p_client_data_json IS NULL OR p_signature IS NULL
     OR p_rp_id IS NULL OR p_origin IS NULL
     OR pg_catalog.octet_length(p_client_data_json) > 65536 THEN
    RETURN;
  END IF;

  -- clientDataJSON: UTF-8 JSON; garbage of any kind is a failed check
  BEGIN
    v_client := pg_catalog.convert_from(p_client_data_json, 'UTF8')::jsonb;
  EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
    RETURN;
  END;
  IF pg_catalog.jsonb_typeof(v_client) IS DISTINCT FROM 'object'
     OR pg_catalog.jsonb_typeof(v_client -> 'challenge') IS DISTINCT FROM 'string' THEN
    RETURN;
  END IF;

  -- the challenge: issued here, spent by this attempt whatever follows
  failure := 'challenge';
  v_chal := authctx._webauthn_b64url_decode(v_client ->> 'challenge');
  IF v_chal IS NULL THEN
    RETURN;
  END IF;
  challenge := v_chal;
  DELETE FROM authctx.webauthn_challenges c
   WHERE c.challenge = v_chal
  RETURNING c.expires_at INTO v_expires;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  IF v_expires <= pg_catalog.clock_timestamp() THEN
    failure := 'challenge_expired';
    RETURN;
  END IF;

  IF pg_catalog.jsonb_typeof(v_client -> 'type') IS DISTINCT FROM 'string'
     OR (v_client ->> 'type') <> 'webauthn.get' THEN
    failure := 'type';
    RETURN;
  END IF;
  IF pg_catalog.jsonb_typeof(v_client -> 'origin') IS DISTINCT FROM 'string'
     OR (v_client ->> 'origin') <> p_origin THEN
    failure := 'origin';
    RETURN;
  END IF;

  -- the credential, locked so that concurrent assertions see each other's counter
  SELECT c.user_id, c.public_key, c.sign_count, c.clone_suspected_at, u.disabled_at
    INTO v_cred
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = p_credential_id
     FOR UPDATE OF c;
  IF NOT FOUND THEN
    failure := 'credential';
    RETURN;
  END IF;
  credential_user := v_cred.user_id;
  IF v_cred.disabled_at IS NOT NULL THEN
    failure := 'disabled';
    RETURN;
  END IF;
  IF v_cred.clone_suspected_at IS NOT NULL THEN
    failure := 'clone_suspected';
    RETURN;
  END IF;

  v_counter := authctx._webauthn_check_assertion(v_cred.public_key,
                 p_authenticator_data, p_client_data_json, p_signature, p_rp_id);
  IF v_counter < 0 THEN
    failure := CASE v_counter
                 WHEN -2 THEN 'rp_id'
                 WHEN -3 THEN 'user_presence'
                 WHEN -4 THEN 'signature'
                 ELSE 'malformed'
               END;
    RETURN;
  END IF;

  -- a counter that does not grow (either side non-zero): possibly cloned;
  -- the caller marks the credential out of band (_webauthn_attempt)
  IF (v_cred.sign_count <> 0 OR v_counter <> 0) AND v_counter <= v_cred.sign_count THEN
    failure := 'counter';
    stored_count := v_cred.sign_count;
    presented_count := v_counter;
    RETURN;
  END IF;

  UPDATE authctx.webauthn_credentials c
     SET sign_count = v_counter,
         last_used_at = pg_catalog.clock_timestamp()
   WHERE c.credential_id = p_credential_id;
  verified_user := v_cred.user_id;
  failure := NULL;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text) IS
  'internal: verify a WebAuthn assertion; the user, the credential''s owner, and why it failed';

-- One attempt, with effects that outlive it.  The verification runs in a
-- subtransaction; on any failure that subtransaction is rolled back, which
-- releases the credential's row lock and undoes the in-transaction spend of
-- the challenge, and a background worker then, in its own transaction,
-- spends the challenge, marks a suspected clone and writes the audit
-- record (login_failed for logins).  So a failed attempt spends its
-- challenge even when the caller's transaction is rolled back by the error
-- login_webauthn raises, and the worker never waits for a lock we hold.
CREATE FUNCTION authctx._webauthn_attempt(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text, p_tenant text, p_login boolean,
    OUT verified_user uuid, OUT tenant_id uuid, OUT failure text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v        record;
  v_count  bigint;
BEGIN
  BEGIN
    SELECT * INTO v
      FROM authctx._webauthn_verify(p_credential_id, p_authenticator_data,
                                    p_client_data_json, p_signature, p_rp_id, p_origin);
    failure := v.failure;
    IF failure IS NULL AND p_login THEN
      IF p_tenant IS NOT NULL THEN
        tenant_id := authctx._resolve_tenant(p_tenant);
        IF tenant_id IS NULL OR NOT EXISTS (
             SELECT 1 FROM authctx.memberships m
              WHERE m.tenant_id = _webauthn_attempt.tenant_id AND m.user_id = v.verified_user) THEN
          failure := 'not_member';
        END IF;
      ELSE
        -- the only membership; with several, no tenant until auth_begin names one
        SELECT pg_catalog.count(*), (pg_catalog.array_agg(m.tenant_id))[1]
          INTO v_count, tenant_id
          FROM authctx.memberships m
         WHERE m.user_id = v.verified_user;
        IF v_count <> 1 THEN
          tenant_id := NULL;
        END IF;
      END IF;
    END IF;
    IF failure IS NOT NULL THEN
      RAISE EXCEPTION 'webauthn attempt failed' USING ERRCODE = 'AXW00';
    END IF;
  EXCEPTION WHEN SQLSTATE 'AXW00' THEN
    NULL;                       -- rolled back: no spend, no counter, no lock
  END;

  IF failure IS NULL THEN
    verified_user := v.verified_user;
    RETURN;
  END IF;
  tenant_id := NULL;
  IF v.challenge IS NOT NULL OR p_login THEN
    PERFORM authctx._autonomous('webauthn_failed', pg_catalog.jsonb_build_object(
      'challenge', pg_catalog.encode(v.challenge, 'hex'),
      'credential_id', pg_catalog.encode(p_credential_id, 'hex'),
      'user_id', v.credential_user,
      'reason', failure,
      'clone', failure = 'counter',
      'stored_count', v.stored_count,
      'presented_count', v.presented_count,
      'login', p_login,
      'method', 'webauthn',
      'count', false,
      'db_role', pg_catalog.session_user()));
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_attempt(bytea, bytea, bytea, bytea, text, text, text, boolean) IS
  'internal: one WebAuthn attempt; a failure spends the challenge, marks a suspected clone and is audited in a transaction of its own';

CREATE FUNCTION authctx.verify_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text) RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT v.verified_user
    FROM authctx._webauthn_attempt($1, $2, $3, $4, $5, $6, NULL, false) v;
$$;
COMMENT ON FUNCTION authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text) IS
  'verify a WebAuthn assertion against a challenge issued here; the user''s id, or NULL (the challenge is spent either way)';

-- login ----------------------------------------------------------------------

CREATE FUNCTION authctx.login_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v  record;
BEGIN
  SELECT * INTO v
    FROM authctx._webauthn_attempt($1, $2, $3, $4, $5, $6, login_webauthn.tenant, true);
  IF v.failure IS NOT NULL THEN
    -- the challenge spend and the login_failed record were written out of
    -- band; a passkey failure does not count toward the password lockout
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- a session, a refresh token and the login audit record
  RETURN authctx._issue_session(v.verified_user, v.tenant_id, 'webauthn',
                                pg_catalog.jsonb_build_object('method', 'webauthn'));
END
$$;
COMMENT ON FUNCTION authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text) IS
  'log in with a WebAuthn assertion: a new session and refresh token; failure raises 28P01';

-- privileges -----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._webauthn_key_alg(bytea),
  authctx._webauthn_check_assertion(bytea, bytea, bytea, bytea, text),
  authctx._webauthn_b64url_decode(text),
  authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text),
  authctx.webauthn_challenge(),
  authctx.add_webauthn_credential(uuid, bytea, bytea, bigint, text),
  authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text),
  authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  authctx.webauthn_challenge(),
  authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text)
TO authctx_app;
GRANT EXECUTE ON FUNCTION
  authctx.add_webauthn_credential(uuid, bytea, bytea, bigint, text),
  authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text)
TO authctx_manager;
-- ---------------------------------------------------------------------------
-- 65 cache: invalidation of the shared-memory session cache (src/cache.c).
--
-- The cache exists only with shared_preload_libraries = 'authctx' and
-- authctx.cache_size > 0; otherwise these triggers do nothing.  Every change
-- that can alter what auth_begin decides pends a cache slot, and the slot is
-- bumped when (and only if) the transaction commits:
--   sessions, api_keys      ('token', kind): the slot of the row's own token
--                           id (old and new row), so that revoking one
--                           session leaves the user's other cached sessions
--                           alone; kind is TOKEN_SESSION 's' or TOKEN_API_KEY
--                           'k' (src/authctx.h), as in the cache key.  Once
--                           a transaction has pended CACHE_PENDING_MAX / 2
--                           slots, the row's user slot (column user_id)
--                           instead, so that a bulk revocation stays short
--                           of flushing the whole database;
--   users, memberships      ('user', column): the slot of the user named by
--                           column, old and new row;
--   tenants                 ('tenant'): the database's tenant slot;
--   TRUNCATE of any of them ('all'): the database's epoch slot.
-- The columns watched are those SessionLookup() and TenantForRequest() read;
-- last_seen_at / last_used_at are not (worker.c writes them in the
-- background, and the cache keeps its own copy).
--
-- The triggers are ENABLE ALWAYS, so that logical replication apply and
-- session_replication_role = replica still invalidate.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx._cache_invalidate() RETURNS trigger
  AS 'MODULE_PATHNAME', 'authctx_cache_invalidate'
  LANGUAGE C;
COMMENT ON FUNCTION authctx._cache_invalidate() IS
  'internal trigger: invalidate the session cache for the sessions, keys, users or tenants a change touches, at commit';

CREATE FUNCTION authctx._cache_flush() RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_cache_flush'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._cache_flush() IS
  'internal: when this transaction commits, drop every session cache entry of this database';

CREATE FUNCTION authctx._cache_stats(
    OUT hits bigint, OUT misses bigint, OUT entries bigint,
    OUT member_hits bigint, OUT member_misses bigint, OUT member_entries bigint,
    OUT evictions bigint, OUT capacity bigint)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_cache_stats'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._cache_stats() IS
  'internal: cluster-wide session cache counters (all zero without shared_preload_libraries)';

REVOKE ALL ON FUNCTION authctx._cache_invalidate(), authctx._cache_flush(),
  authctx._cache_stats() FROM PUBLIC;

-- sessions ------------------------------------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.sessions FOR EACH ROW
  WHEN ((OLD.id, OLD.user_id, OLD.tenant_id, OLD.verifier, OLD.expires_at, OLD.revoked_at)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.tenant_id, NEW.verifier, NEW.expires_at, NEW.revoked_at))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 's');
-- A revoked row was never cached as valid, nor is an expired one served
-- (expiry is checked on every hit); the margin covers a wall clock that steps
-- back a little.
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.sessions FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL
        AND OLD.expires_at OPERATOR(pg_catalog.>)
            (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '5 minutes'))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 's');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.sessions FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- API keys ------------------------------------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.api_keys FOR EACH ROW
  WHEN ((OLD.id, OLD.user_id, OLD.tenant_id, OLD.verifier, OLD.expires_at, OLD.revoked_at,
         OLD.scopes)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.tenant_id, NEW.verifier, NEW.expires_at, NEW.revoked_at,
         NEW.scopes))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 'k');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.api_keys FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL
        AND (OLD.expires_at IS NULL
             OR OLD.expires_at OPERATOR(pg_catalog.>)
                (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '5 minutes')))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 'k');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.api_keys FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- users: disable / enable, deletion -----------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.users FOR EACH ROW
  WHEN ((OLD.id, OLD.disabled_at) IS DISTINCT FROM (NEW.id, NEW.disabled_at))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.users FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.users FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- memberships: added (a cached "not a member" of its own tenant), removed,
-- role changed ----------------------------------------------------------------
CREATE TRIGGER cache_invalidate_insert
  AFTER INSERT ON authctx.memberships FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.memberships FOR EACH ROW
  WHEN ((OLD.tenant_id, OLD.user_id, OLD.role) IS DISTINCT FROM (NEW.tenant_id, NEW.user_id, NEW.role))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.memberships FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.memberships FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- tenants: a slug or id that changes or goes away ---------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.tenants FOR EACH ROW
  WHEN ((OLD.id, OLD.slug) IS DISTINCT FROM (NEW.id, NEW.slug))
  EXECUTE FUNCTION authctx._cache_invalidate('tenant');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.tenants FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('tenant');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.tenants FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

ALTER TABLE authctx.sessions ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.api_keys ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.users ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.memberships ENABLE ALWAYS TRIGGER cache_invalidate_insert,
  ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.tenants ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;

-- Nothing cached from an earlier installation in this database survives
-- this one (DROP EXTENSION leaves shared memory as it was).
SELECT authctx._cache_flush();
-- ---------------------------------------------------------------------------
-- 70 request auth: auth_begin / auth_end, in schema public so that an
-- application role calls them unqualified with the default search_path.
-- Written in C; they are not SECURITY DEFINER (request.c reads the tables
-- as the bootstrap superuser for the lookup only), so a caller's own
-- privileges and RLS status stay in force for the rest of the transaction.
-- ---------------------------------------------------------------------------

CREATE FUNCTION public.auth_begin(token text) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(text) IS
  'authctx: validate a session token or API key and attach user and tenant to this transaction';

CREATE FUNCTION public.auth_begin(token text, tenant text) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(text, text) IS
  'authctx: like auth_begin(token), acting in the tenant named by slug or uuid (the user must be a member)';

CREATE FUNCTION public.auth_end() RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_auth_end'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_end() IS 'authctx: clear this transaction''s authentication context';

REVOKE ALL ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() TO authctx_app;
-- ---------------------------------------------------------------------------
-- 80 tenant context: isolation helpers, lint, admin bypass.
--
-- enable_tenant_isolation(tbl, col) installs, on a table its caller owns:
--   ENABLE + FORCE row level security;
--   policy authctx_tenant_isolation, FOR ALL TO PUBLIC,
--     USING and WITH CHECK (col = (SELECT authctx.tenant_id()));
--   policy authctx_admin_bypass, FOR ALL TO authctx_admin,
--     USING and WITH CHECK (authctx.admin_bypass());
--   column default authctx.tenant_id(); an index on col if none leads with it;
--   the same on each existing partition of a partitioned table.
-- The bypass is a second permissive policy (policies are ORed) rather than
-- an OR inside the first: for every role outside authctx_admin the qual stays
-- "col = (SELECT authctx.tenant_id())", which the planner can answer with
-- the index.  The sub-select makes tenant_id() an InitPlan, evaluated once
-- per query instead of once per row (same predicate; a seq scan under the
-- policy then costs what the same scan with a constant costs).
-- What was there before (RLS flags, old default, whether we made the index)
-- is kept as JSON in the comment of the isolation policy, so
-- disable_tenant_isolation undoes exactly what enable did.
--
-- These functions run as the caller (SECURITY INVOKER): only the table's
-- owner can change its policies.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.enable_tenant_isolation(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  rel       pg_catalog.pg_class%ROWTYPE;
  coltype   regtype;
  state     jsonb;
  olddef    text;
  idxname   text;
BEGIN
  IF tbl IS NULL OR tenant_column IS NULL THEN
    RAISE EXCEPTION 'table and tenant column must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) tbl;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = '42809';
  END IF;
  SELECT a.atttypid::regtype INTO coltype
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column
     AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
  IF coltype IS NULL THEN
    RAISE EXCEPTION 'column "%" of table "%" does not exist', tenant_column, tbl
      USING ERRCODE = '42703';
  END IF;
  IF coltype OPERATOR(pg_catalog.<>) 'uuid'::regtype THEN
    RAISE EXCEPTION 'tenant column "%" of table "%" must be of type uuid, not %', tenant_column, tbl, coltype
      USING ERRCODE = '42804';
  END IF;

  -- Already isolated?  Keep the original "before" state; only re-apply.
  SELECT pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb INTO state
    FROM pg_catalog.pg_policy p
   WHERE p.polrelid OPERATOR(pg_catalog.=) tbl AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation';
  IF state IS NOT NULL AND state->>'column' OPERATOR(pg_catalog.<>) tenant_column::text THEN
    RAISE EXCEPTION 'table "%" is already isolated on column "%"', tbl, state->>'column'
      USING ERRCODE = '55000', HINT = 'Call authctx.disable_tenant_isolation first.';
  END IF;

  IF state IS NULL THEN
    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO olddef
      FROM pg_catalog.pg_attrdef d
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
     WHERE d.adrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column;
    state := pg_catalog.jsonb_build_object(
      'column', tenant_column,
      'rls_enabled', rel.relrowsecurity,
      'rls_forced', rel.relforcerowsecurity,
      'default', olddef,
      'index', NULL);
  END IF;

  EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
               WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
                 AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation') THEN
    EXECUTE pg_catalog.format('DROP POLICY authctx_tenant_isolation ON %s', tbl);
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
              WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
                AND p.polname OPERATOR(pg_catalog.=) 'authctx_admin_bypass') THEN
    EXECUTE pg_catalog.format('DROP POLICY authctx_admin_bypass ON %s', tbl);
  END IF;
  EXECUTE pg_catalog.format(
    'CREATE POLICY authctx_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
    'USING (%I OPERATOR(pg_catalog.=) (SELECT authctx.tenant_id())) '
    'WITH CHECK (%I OPERATOR(pg_catalog.=) (SELECT authctx.tenant_id()))', tbl, tenant_column, tenant_column);
  EXECUTE pg_catalog.format(
    'CREATE POLICY authctx_admin_bypass ON %s AS PERMISSIVE FOR ALL TO authctx_admin '
    'USING (authctx.admin_bypass()) WITH CHECK (authctx.admin_bypass())', tbl);
  EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT authctx.tenant_id()',
                            tbl, tenant_column);

  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                  JOIN pg_catalog.pg_attribute a
                    ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                 WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column) THEN
    idxname := pg_catalog.left(rel.relname || '_' || tenant_column, 50) || '_authctx_idx';
    EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (%I)', idxname, tbl, tenant_column);
    state := pg_catalog.jsonb_set(state, '{index}', pg_catalog.to_jsonb(idxname));
  END IF;

  EXECUTE pg_catalog.format('COMMENT ON POLICY authctx_tenant_isolation ON %s IS %L', tbl, state::text);

  -- A partition read directly bypasses its parent's policies: cover the
  -- existing partitions too (partitions created later need their own call;
  -- isolation_report lists them).
  PERFORM authctx.enable_tenant_isolation(i.inhrelid::regclass, tenant_column)
     FROM pg_catalog.pg_inherits i
    WHERE i.inhparent OPERATOR(pg_catalog.=) tbl;
END
$$;
COMMENT ON FUNCTION authctx.enable_tenant_isolation(regclass, name) IS
  'enable and force RLS with a tenant policy, column default and index; idempotent';

CREATE FUNCTION authctx.disable_tenant_isolation(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  state jsonb;
  nsp   name;
  part  regclass;
BEGIN
  SELECT pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb INTO state
    FROM pg_catalog.pg_policy p
   WHERE p.polrelid OPERATOR(pg_catalog.=) tbl AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation';
  IF state IS NULL THEN
    RAISE EXCEPTION 'table "%" is not isolated by authctx', tbl USING ERRCODE = '55000';
  END IF;

  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_tenant_isolation ON %s', tbl);
  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_admin_bypass ON %s', tbl);
  IF state->>'default' IS NULL THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, state->>'column');
  ELSE
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s',
                              tbl, state->>'column', state->>'default');
  END IF;
  IF NOT (state->>'rls_forced')::boolean THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', tbl);
  END IF;
  IF NOT (state->>'rls_enabled')::boolean THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
  END IF;
  IF state->>'index' IS NOT NULL THEN
    SELECT c.relnamespace::regnamespace::name INTO nsp FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) tbl;
    EXECUTE pg_catalog.format('DROP INDEX IF EXISTS %I.%I', nsp, state->>'index');
  END IF;

  -- partitions isolated by authctx are released too
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
     WHERE i.inhparent OPERATOR(pg_catalog.=) tbl
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) i.inhrelid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation')
  LOOP
    PERFORM authctx.disable_tenant_isolation(part);
  END LOOP;
END
$$;
COMMENT ON FUNCTION authctx.disable_tenant_isolation(regclass) IS
  'undo exactly what enable_tenant_isolation did';

CREATE FUNCTION authctx.isolation_report()
RETURNS TABLE (table_name regclass, tenant_column name, rls_enabled boolean,
               rls_forced boolean, has_policy boolean, has_index boolean, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH candidates AS (
    SELECT c.oid AS relid, c.relrowsecurity, c.relforcerowsecurity,
           COALESCE(
             (SELECT (pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb)->>'column'
                FROM pg_catalog.pg_policy p
               WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                 AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'),
             'tenant_id')::name AS col,
           EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation') AS isolated
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'authctx')
       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  ), checked AS (
    SELECT c.relid, c.col, c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) c.relid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'
                      AND p.polcmd OPERATOR(pg_catalog.=) '*') AS has_policy,
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a
                       ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                    WHERE i.indrelid OPERATOR(pg_catalog.=) c.relid AND a.attname OPERATOR(pg_catalog.=) c.col) AS has_index
      FROM candidates c
     WHERE c.isolated
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) c.relid AND a.attname OPERATOR(pg_catalog.=) 'tenant_id'
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  )
  SELECT k.relid::regclass, k.col, k.relrowsecurity, k.relforcerowsecurity, k.has_policy, k.has_index,
         NULLIF(pg_catalog.concat_ws('; ',
           CASE WHEN NOT k.relrowsecurity THEN 'row level security is not enabled' END,
           CASE WHEN NOT k.relforcerowsecurity THEN 'row level security is not forced (the owner bypasses it)' END,
           CASE WHEN NOT k.has_policy THEN 'no authctx tenant isolation policy' END,
           CASE WHEN NOT k.has_index THEN 'no index leading with the tenant column' END), '')
    FROM checked k
   ORDER BY k.relid::regclass::text;
$$;
COMMENT ON FUNCTION authctx.isolation_report() IS
  'one row per table with a tenant_id column or authctx isolation, and what is wrong with it';

CREATE FUNCTION authctx.admin_begin(reason text) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_admin_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authctx.admin_begin(text) IS
  'audited bypass of tenant isolation for this transaction; members of authctx_admin only';

REVOKE ALL ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report(),
  authctx.admin_begin(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report() TO authctx_manager;
GRANT EXECUTE ON FUNCTION authctx.admin_begin(text) TO authctx_admin;
-- ---------------------------------------------------------------------------
-- 99 privileges sweep: whatever a module file forgot, PUBLIC ends with
-- EXECUTE on the accessors only and no privilege on any table.
-- ---------------------------------------------------------------------------
DO $sweep$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::regclass
       AND d.objid OPERATOR(pg_catalog.=) p.oid
       AND d.deptype OPERATOR(pg_catalog.=) 'e'
      JOIN pg_catalog.pg_extension e
        ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'authctx'
     WHERE p.proname NOT IN ('user_id', 'tenant_id', 'role', 'session_id', 'current',
                             'has_role', 'has_scope', 'is_authenticated',
                             'token_in', 'token_out', 'token_recv', 'token_send')
  LOOP
    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$sweep$;
REVOKE ALL ON ALL TABLES IN SCHEMA authctx FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA authctx FROM PUBLIC;
