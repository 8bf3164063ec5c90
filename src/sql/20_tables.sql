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
