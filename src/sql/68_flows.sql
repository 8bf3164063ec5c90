-- ---------------------------------------------------------------------------
-- 68 flows (the onetime module): one-time tokens for email verification,
-- password reset, magic links and invitations, and TOTP second factors
-- with step-up.  C half: src/otp.c (TOTP, recovery codes).
--
-- One-time tokens.  authctx.token of kind axo_ (same id / secret /
-- checksum design as every token, src/token.c); the row keyed by the
-- token's public id stores only its verifier.  A token has one purpose
-- (verify_email, reset_password, magic_link, invite), an expiry, and is
-- bound to the email its user had when it was made (email_key): a token
-- sent to an address that is no longer the user's does nothing.  It is
-- spent by one statement,
--     UPDATE ... SET spent_at = now WHERE id = $1 AND spent_at IS NULL
--                AND revoked_at IS NULL AND expires_at > now
-- which two transactions cannot both satisfy: the second waits for the
-- first's row lock and then re-checks the row (READ COMMITTED: spent, no
-- match; REPEATABLE READ and SERIALIZABLE: 40001).  A spend that a later
-- error of the same call rolls back (a password that breaks the length
-- rules, an invitation for another email) leaves the token unspent.
-- Making a token revokes the unspent tokens of the same user and purpose
-- (for invitations: of the same tenant and email), under a transaction
-- advisory lock on that pair, so at most one is ever outstanding.
-- reset_password revokes every outstanding one-time token of its user.
-- Every failure of a token is the same 28000 "invalid token" (unknown,
-- malformed, another kind, another purpose, spent, revoked, expired, made
-- in another database: the tables decide); login_with_token fails like
-- login, 28P01, and records the failure (login_failed, method magic_link)
-- in a transaction of its own, failing closed (55000) when it cannot.
-- Magic-link failures do not count toward the lockout (a 256-bit secret
-- cannot be guessed: counting would only let anyone who saw a spent link
-- lock its owner out), but a locked account cannot log in with a link.
-- cleanup() (50_session.sql) deletes expired, spent and revoked tokens.
-- Not dumped by pg_dump: a restored token would be unspent again.
--
-- TOTP.  One factor per user in totp_factors: the active secret and, while
-- an enrolment or re-enrolment waits for confirmation, a pending one, each
-- sealed with crypto_secretbox under a key derived from authctx.secret_key
-- and the user id (src/otp.c).  confirm_totp activates the pending secret
-- and replaces the recovery codes (10, single use, stored as verifiers).
-- verify_totp runs inside an auth_begin context of a session: it checks a
-- code of the current step or one either side, newer than the last step
-- accepted (so each step's code is accepted once), or an unspent recovery
-- code (then spent); the factor row is locked FOR UPDATE while it does, so
-- concurrent verifications of one user take turns.  Success adds 'otp' to
-- the session's amr (the next auth_begin shows it).  Failure returns false
-- after the worker has counted it toward the account's lockout (the same
-- login_failed record as a wrong password, method totp) and written
-- totp_failed, each in a transaction of its own (55000 when it cannot); a
-- locked account's codes are refused unchecked, audited (totp_failed,
-- reason locked), not counted; so are they while the codes' own streak
-- (authctx._totp_locked, which a password login does not reset) holds.
-- The failing path calls the worker holding only the factor row, which
-- the worker never touches (worker.c, DEADLOCK HAZARD).
-- ---------------------------------------------------------------------------

CREATE TABLE authctx.one_time_tokens (
  id          uuid PRIMARY KEY,       -- the token's public id
  purpose     text NOT NULL
              CHECK (purpose IN ('verify_email', 'reset_password', 'magic_link', 'invite')),
  user_id     uuid REFERENCES authctx.users (id) ON DELETE CASCADE,
  tenant_id   uuid REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  email_key   bytea NOT NULL,         -- authctx._email_key of the address it was sent to
  role        text,                   -- invite: the role to grant
  verifier    bytea NOT NULL,         -- keyed BLAKE2b of the token; never the secret
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at  timestamptz NOT NULL,
  spent_at    timestamptz,
  revoked_at  timestamptz,
  CONSTRAINT one_time_tokens_subject_check CHECK (
    CASE WHEN purpose OPERATOR(pg_catalog.=) 'invite'
         THEN tenant_id IS NOT NULL AND role IS NOT NULL AND user_id IS NULL
         ELSE user_id IS NOT NULL AND tenant_id IS NULL AND role IS NULL END)
);
CREATE INDEX one_time_tokens_user_idx ON authctx.one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_invite_idx ON authctx.one_time_tokens (tenant_id, email_key);
CREATE INDEX one_time_tokens_expires_idx ON authctx.one_time_tokens (expires_at);
COMMENT ON TABLE authctx.one_time_tokens IS
  'one-time tokens (axo_): email verification, password reset, magic links, invitations; single use, verifier only';

CREATE TABLE authctx.totp_factors (
  user_id         uuid PRIMARY KEY REFERENCES authctx.users (id) ON DELETE CASCADE,
  secret          bytea,              -- active secret, sealed (crypto_secretbox); NULL until confirmed
  pending_secret  bytea,              -- secret waiting for confirm_totp, sealed
  last_step       bigint,             -- newest 30-second step accepted (each step's code once)
  enabled_at      timestamptz,
  pending_at      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.totp_factors IS
  'TOTP second factors (RFC 6238): secrets sealed under authctx.secret_key, never in clear';

CREATE TABLE authctx.totp_recovery_codes (
  user_id     uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  verifier    bytea NOT NULL,         -- keyed BLAKE2b of the code; never the code
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  spent_at    timestamptz,
  PRIMARY KEY (user_id, verifier)
);
COMMENT ON TABLE authctx.totp_recovery_codes IS 'single-use TOTP recovery codes, as verifiers';

REVOKE ALL ON authctx.one_time_tokens, authctx.totp_factors, authctx.totp_recovery_codes FROM PUBLIC;
-- factors and recovery codes are dumped; one-time tokens are not (see above)
SELECT pg_catalog.pg_extension_config_dump('authctx.totp_factors', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.totp_recovery_codes', '');

-- C primitives (src/otp.c); internal.
CREATE FUNCTION authctx._totp_enroll(user_id uuid, account text, OUT sealed bytea, OUT uri text)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_totp_enroll'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._totp_enroll(uuid, text) IS
  'internal: a fresh TOTP secret sealed for the user under authctx.secret_key, and its otpauth:// URI';
CREATE FUNCTION authctx._totp_match(user_id uuid, sealed bytea, code text, after_step bigint,
                                    at timestamptz)
  RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_totp_match'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._totp_match(uuid, bytea, text, bigint, timestamptz) IS
  'internal: the time step (at''s or one either side, newer than after_step) whose TOTP code equals code, or NULL';
CREATE FUNCTION authctx._totp_code(key bytea, unix_time bigint, digits integer)
  RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_totp_code'
  LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION authctx._totp_code(bytea, bigint, integer) IS
  'internal: the RFC 6238 TOTP code (HMAC-SHA1, 30 s) of a raw key at a Unix time (test vectors)';
CREATE FUNCTION authctx._recovery_codes(n integer)
  RETURNS text[]
  AS 'MODULE_PATHNAME', 'authctx_recovery_codes'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._recovery_codes(integer) IS
  'internal: n fresh recovery codes (100 bits each)';
CREATE FUNCTION authctx._recovery_verifier(user_id uuid, code text)
  RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_recovery_verifier'
  LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION authctx._recovery_verifier(uuid, text) IS
  'internal: the stored verifier of a recovery code of a user, or NULL for text that is no recovery code';

-- internal helpers ----------------------------------------------------------

-- A positive lifetime, or 22023.
CREATE FUNCTION authctx._check_ttl(ttl interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF ttl IS NULL OR ttl OPERATOR(pg_catalog.<=) interval '0' THEN
    RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._check_ttl(interval) IS 'internal: raises 22023 unless the interval is positive';

-- The lock under which a new one-time token supersedes the older ones of
-- its scope (user and purpose; tenant and email for invitations): a
-- transaction advisory lock on a keyed hash of the scope, keyed with the
-- per-database secret like the account lock.
CREATE FUNCTION authctx._lock_one_time_scope(p_scope bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._lock_keyed('authctx one-time '::bytea OPERATOR(pg_catalog.||) p_scope);
END
$$;
COMMENT ON FUNCTION authctx._lock_one_time_scope(bytea) IS
  'internal: serialise the making of one-time tokens of one scope (user and purpose, or tenant and email)';

-- Spend a one-time token of a purpose: the row when the text is a live
-- token of that purpose whose secret matches, now spent by this
-- transaction; NULL otherwise (the caller raises its generic error).  The
-- single-use guarantee is the UPDATE's WHERE clause (see the header).
CREATE FUNCTION authctx._spend_one_time_token(p_token text, p_purpose text)
RETURNS authctx.one_time_tokens
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok authctx.token := authctx._parse_token(p_token, 'one_time');
  v_row authctx.one_time_tokens;
  v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
  IF v_tok IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_row FROM authctx.one_time_tokens t
   WHERE t.id OPERATOR(pg_catalog.=) authctx._token_id(v_tok);
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.purpose OPERATOR(pg_catalog.<>) p_purpose THEN
    RETURN NULL;
  END IF;
  UPDATE authctx.one_time_tokens t SET spent_at = v_now
   WHERE t.id OPERATOR(pg_catalog.=) v_row.id
     AND t.spent_at IS NULL AND t.revoked_at IS NULL
     AND t.expires_at OPERATOR(pg_catalog.>) v_now
  RETURNING * INTO v_row;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN v_row;
END
$$;
COMMENT ON FUNCTION authctx._spend_one_time_token(text, text) IS
  'internal: spend a live one-time token of a purpose (one UPDATE that only one transaction can satisfy); NULL when it is none';

-- The user a spent token names, when its email is still the one the token
-- was sent to; NULL otherwise.
CREATE FUNCTION authctx._one_time_user(p_row authctx.one_time_tokens) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT u.id FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) p_row.user_id
     AND authctx._email_key(u.email) OPERATOR(pg_catalog.=) p_row.email_key;
$$;
COMMENT ON FUNCTION authctx._one_time_user(authctx.one_time_tokens) IS
  'internal: the user of a one-time token, if the user''s email is still the one the token was sent to';

-- Make a one-time token: supersede the unspent ones of the same scope,
-- store the verifier, audit.  The caller has checked its arguments.
CREATE FUNCTION authctx._issue_one_time_token(p_purpose text, p_user_id uuid, p_tenant_id uuid,
                                              p_email_key bytea, p_role text, p_ttl interval)
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok authctx.token := authctx._token_new('one_time');
  v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
  IF p_purpose OPERATOR(pg_catalog.=) 'invite' THEN
    PERFORM authctx._lock_one_time_scope(pg_catalog.uuid_send(p_tenant_id) OPERATOR(pg_catalog.||) p_email_key);
    UPDATE authctx.one_time_tokens t SET revoked_at = v_now
     WHERE t.tenant_id OPERATOR(pg_catalog.=) p_tenant_id
       AND t.email_key OPERATOR(pg_catalog.=) p_email_key
       AND t.purpose OPERATOR(pg_catalog.=) 'invite'
       AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  ELSE
    PERFORM authctx._lock_one_time_scope(pg_catalog.uuid_send(p_user_id)
                                         OPERATOR(pg_catalog.||) pg_catalog.convert_to(p_purpose, 'UTF8'));
    UPDATE authctx.one_time_tokens t SET revoked_at = v_now
     WHERE t.user_id OPERATOR(pg_catalog.=) p_user_id
       AND t.purpose OPERATOR(pg_catalog.=) p_purpose
       AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  END IF;
  INSERT INTO authctx.one_time_tokens (id, purpose, user_id, tenant_id, email_key, role,
                                       verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_tok), p_purpose, p_user_id, p_tenant_id, p_email_key, p_role,
          authctx._token_verifier(v_tok), v_now, v_now OPERATOR(pg_catalog.+) p_ttl);
  PERFORM authctx._audit('one_time_token_created', p_user_id, p_tenant_id, NULL,
                         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                           'purpose', p_purpose, 'token_id', authctx._token_id(v_tok),
                           'role', p_role, 'expires_at', v_now OPERATOR(pg_catalog.+) p_ttl)));
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx._issue_one_time_token(text, uuid, uuid, bytea, text, interval) IS
  'internal: make a one-time token, superseding the unspent ones of its scope, and audit it';

-- Record a failed magic-link login in a transaction of its own (like a
-- failed password login), then raise 28P01; 55000 when it cannot be
-- recorded.  Called holding no lock the worker needs.
CREATE FUNCTION authctx._one_time_login_failed(p_user_id uuid, p_reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT coalesce(authctx._autonomous('login_failed', pg_catalog.jsonb_build_object(
    'user_id', p_user_id,
    'reason', p_reason,
    'method', 'magic_link',
    'count', false,
    'db_role', pg_catalog.session_user())), false) THEN
    RAISE EXCEPTION 'could not record a failed login' USING ERRCODE = '55000';
  END IF;
  RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
END
$$;
COMMENT ON FUNCTION authctx._one_time_login_failed(uuid, text) IS
  'internal: record a failed magic-link login durably, then raise 28P01';

-- one-time tokens: the public functions -------------------------------------

CREATE FUNCTION authctx.create_one_time_token(user_id uuid, purpose text,
                                              ttl interval DEFAULT '15 minutes')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key bytea;
BEGIN
  IF create_one_time_token.purpose IS NULL
     OR create_one_time_token.purpose OPERATOR(pg_catalog.<>) ALL
        (ARRAY['verify_email', 'reset_password', 'magic_link']) THEN
    RAISE EXCEPTION 'invalid one-time token purpose'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A purpose is verify_email, reset_password or magic_link; invitations are made by authctx.invite_member.';
  END IF;
  PERFORM authctx._check_ttl(create_one_time_token.ttl);
  PERFORM authctx._require_user(create_one_time_token.user_id);
  SELECT authctx._email_key(u.email) INTO v_key
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) create_one_time_token.user_id;
  RETURN authctx._issue_one_time_token(create_one_time_token.purpose, create_one_time_token.user_id,
                                       NULL, v_key, NULL, create_one_time_token.ttl);
END
$$;
COMMENT ON FUNCTION authctx.create_one_time_token(uuid, text, interval) IS
  'a single-use token (axo_) for verify_email, reset_password or magic_link, bound to the user''s current email; supersedes the user''s older unspent tokens of that purpose';

CREATE FUNCTION authctx.verify_email(token text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row  authctx.one_time_tokens := authctx._spend_one_time_token(verify_email.token, 'verify_email');
  v_user uuid;
BEGIN
  IF v_row.id IS NOT NULL THEN
    UPDATE authctx.users u SET email_verified_at = pg_catalog.clock_timestamp()
     WHERE u.id OPERATOR(pg_catalog.=) authctx._one_time_user(v_row)
    RETURNING u.id INTO v_user;
  END IF;
  IF v_user IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._audit('email_verified', v_user, NULL, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id));
  RETURN v_user;
END
$$;
COMMENT ON FUNCTION authctx.verify_email(text) IS
  'spend a verify_email token: marks the user''s email verified and returns the user id; 28000 for any bad token';

CREATE FUNCTION authctx.reset_password(token text, new_password text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row      authctx.one_time_tokens := authctx._spend_one_time_token(reset_password.token, 'reset_password');
  v_user     uuid;
  v_sessions integer;
  v_tokens   integer;
BEGIN
  IF v_row.id IS NOT NULL THEN
    v_user := authctx._one_time_user(v_row);
  END IF;
  IF v_user IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  -- the length rules (22023) undo the spend with everything else
  PERFORM authctx.set_password(v_user, reset_password.new_password);
  -- every session and refresh token, the caller's own too: the reset
  -- logs nobody in, and whoever had the old password is out
  v_sessions := authctx.revoke_user_sessions(v_user);
  UPDATE authctx.one_time_tokens t SET revoked_at = pg_catalog.clock_timestamp()
   WHERE t.user_id OPERATOR(pg_catalog.=) v_user
     AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  PERFORM authctx._audit('password_reset', v_user, NULL, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id,
                                                       'revoked_sessions', v_sessions,
                                                       'revoked_one_time_tokens', v_tokens));
  RETURN v_user;
END
$$;
COMMENT ON FUNCTION authctx.reset_password(text, text) IS
  'spend a reset_password token: set the password (length rules 22023, token then unspent), revoke every session, refresh token and one-time token of the user; returns the user id; 28000 for any bad token';

CREATE FUNCTION authctx.login_with_token(token text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row      authctx.one_time_tokens;
  v_user     uuid;
  v_disabled timestamptz;
  v_locked   timestamptz;
  v_tenant   uuid;
BEGIN
  -- nothing can be issued nor a failure recorded in a read-only transaction
  IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  v_row := authctx._spend_one_time_token(login_with_token.token, 'magic_link');
  IF v_row.id IS NOT NULL THEN
    v_user := authctx._one_time_user(v_row);
  END IF;
  IF v_user IS NULL THEN
    PERFORM authctx._one_time_login_failed(v_row.user_id, 'invalid_token');
  END IF;
  SELECT u.disabled_at INTO v_disabled FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) v_user;
  SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t
   WHERE t.user_id OPERATOR(pg_catalog.=) v_user;
  IF v_disabled IS NOT NULL THEN
    PERFORM authctx._one_time_login_failed(v_user, 'disabled');
  ELSIF v_locked OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() THEN
    -- the account's lockout holds for links as for passwords; the link
    -- stays unspent (our error undoes the spend)
    PERFORM authctx._one_time_login_failed(v_user, 'locked');
  END IF;
  IF login_with_token.tenant IS NOT NULL THEN
    v_tenant := authctx._resolve_tenant(login_with_token.tenant);
    IF v_tenant IS NULL OR NOT authctx._lock_membership(v_tenant, v_user) THEN
      PERFORM authctx._one_time_login_failed(v_user, 'not_member');
    END IF;
  ELSE
    v_tenant := authctx._member_tenant(v_user, NULL, false);
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'magic_link', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login_with_token(text, text) IS
  'magic-link login: spend a magic_link token for a session and refresh token (amr {otp_email}); any failure 28P01, recorded like a failed login';

CREATE FUNCTION authctx.invite_member(tenant text, email text, role text DEFAULT 'member',
                                      ttl interval DEFAULT '7 days')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tenant uuid;
BEGIN
  PERFORM authctx._check_email(invite_member.email);
  PERFORM authctx._check_role(invite_member.role);
  PERFORM authctx._check_ttl(invite_member.ttl);
  v_tenant := authctx._require_tenant(invite_member.tenant);
  RETURN authctx._issue_one_time_token('invite', NULL, v_tenant,
                                       authctx._email_key(invite_member.email),
                                       invite_member.role, invite_member.ttl);
END
$$;
COMMENT ON FUNCTION authctx.invite_member(text, text, text, interval) IS
  'an invitation token (axo_, purpose invite) for an email to join a tenant with a role; supersedes older unspent invitations of that email to that tenant';

CREATE FUNCTION authctx.accept_invite(token text, user_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row authctx.one_time_tokens := authctx._spend_one_time_token(accept_invite.token, 'invite');
  v_key bytea;
BEGIN
  IF v_row.id IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._require_user(accept_invite.user_id);
  SELECT authctx._email_key(u.email) INTO v_key
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) accept_invite.user_id;
  -- our error undoes the spend: the invitation stays for its addressee
  IF v_key IS DISTINCT FROM v_row.email_key THEN
    RAISE EXCEPTION 'the invitation was sent to another email address'
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Only the user whose email received the invitation can accept it.';
  END IF;
  PERFORM authctx.add_member(v_row.tenant_id::text, accept_invite.user_id, v_row.role);
  PERFORM authctx._audit('invite_accepted', accept_invite.user_id, v_row.tenant_id, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id, 'role', v_row.role));
  RETURN v_row.tenant_id;
END
$$;
COMMENT ON FUNCTION authctx.accept_invite(text, uuid) IS
  'spend an invitation: the user (whose email must be the invited one, else 42501 and the invitation stays) joins the tenant with the invited role; returns the tenant id; 28000 for any bad token';

-- TOTP ----------------------------------------------------------------------

CREATE FUNCTION authctx.enroll_totp(user_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_email text;
  v_new   record;
BEGIN
  PERFORM authctx._require_user(enroll_totp.user_id);
  SELECT u.email INTO v_email FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) enroll_totp.user_id;
  v_new := authctx._totp_enroll(enroll_totp.user_id, v_email);
  INSERT INTO authctx.totp_factors AS f (user_id, pending_secret, pending_at)
  VALUES (enroll_totp.user_id, v_new.sealed, pg_catalog.clock_timestamp())
  ON CONFLICT ON CONSTRAINT totp_factors_pkey DO UPDATE
    SET pending_secret = excluded.pending_secret, pending_at = excluded.pending_at;
  RETURN v_new.uri;
END
$$;
COMMENT ON FUNCTION authctx.enroll_totp(uuid) IS
  'start (or restart) a TOTP enrolment: returns the otpauth:// URI of a new secret, pending until confirm_totp; an active factor stays active until then; 55000 without authctx.secret_key';

CREATE FUNCTION authctx.confirm_totp(user_id uuid, code text) RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_factor authctx.totp_factors;
  v_step   bigint;
  v_codes  text[];
BEGIN
  PERFORM authctx._require_user(confirm_totp.user_id);
  SELECT * INTO v_factor FROM authctx.totp_factors f
   WHERE f.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id FOR UPDATE;
  IF v_factor.pending_secret IS NULL THEN
    RAISE EXCEPTION 'no TOTP enrolment is pending for this user'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Call authctx.enroll_totp(user_id) first.';
  END IF;
  IF confirm_totp.code IS NOT NULL THEN
    v_step := authctx._totp_match(confirm_totp.user_id, v_factor.pending_secret,
                                  pg_catalog.btrim(confirm_totp.code), -1,
                                  pg_catalog.clock_timestamp());
  END IF;
  IF v_step IS NULL THEN
    RAISE EXCEPTION 'invalid code' USING ERRCODE = '28000';
  END IF;
  UPDATE authctx.totp_factors f
     SET secret = f.pending_secret, pending_secret = NULL, pending_at = NULL,
         last_step = v_step, enabled_at = pg_catalog.clock_timestamp()
   WHERE f.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id;
  DELETE FROM authctx.totp_recovery_codes r WHERE r.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id;
  v_codes := authctx._recovery_codes(10);
  INSERT INTO authctx.totp_recovery_codes (user_id, verifier)
  SELECT confirm_totp.user_id, authctx._recovery_verifier(confirm_totp.user_id, c)
    FROM pg_catalog.unnest(v_codes) c;
  PERFORM authctx._audit('totp_enabled', confirm_totp.user_id, NULL, NULL,
                         pg_catalog.jsonb_build_object('recovery_codes', 10,
                                                       'replaced', v_factor.secret IS NOT NULL));
  RETURN v_codes;
END
$$;
COMMENT ON FUNCTION authctx.confirm_totp(uuid, text) IS
  'activate the pending TOTP secret with a current code (else 28000); returns 10 single-use recovery codes, shown once';

-- Record a failed second factor in transactions of their own: the lockout
-- count (the same login_failed record as a password failure; not for an
-- attempt refused because the account is locked, which does not count)
-- and the totp_failed event.  55000 when either cannot be written.
CREATE FUNCTION authctx._totp_failed(p_ctx authctx.context, p_reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base interval;
  v_max  interval;
BEGIN
  IF p_reason OPERATOR(pg_catalog.<>) 'locked' THEN
    -- our settings travel with the record (the worker does not see them)
    v_base := authctx._setting('authctx.lockout_base_delay');
    v_max := authctx._setting('authctx.lockout_max_delay');
    PERFORM authctx._autonomous_call('login_failed', pg_catalog.jsonb_build_object(
      'user_id', p_ctx.user_id,
      'reason', p_reason,
      'method', 'totp',
      'count', true,
      'threshold', pg_catalog.current_setting('authctx.lockout_threshold')::integer,
      'base_delay', pg_catalog.date_part('epoch', v_base),
      'max_delay', pg_catalog.date_part('epoch', v_max),
      'db_role', pg_catalog.session_user()));
  END IF;
  PERFORM authctx._autonomous_call('audit', pg_catalog.jsonb_build_object(
    'event', 'totp_failed',
    'user_id', p_ctx.user_id,
    'tenant_id', p_ctx.tenant_id,
    'session_id', p_ctx.session_id,
    'db_role', pg_catalog.session_user(),
    'detail', pg_catalog.jsonb_build_object('reason', p_reason)));
END
$$;
COMMENT ON FUNCTION authctx._totp_failed(authctx.context, text) IS
  'internal: count a failed TOTP verification toward the lockout (unless refused as locked) and audit totp_failed, durably (55000 otherwise)';

-- Step a session up: add an authentication method (RFC 8176 name) to its
-- amr for the rest of its life (refresh carries a login's amr on, src/sql/
-- 50_session.sql); auth_begin publishes it from the next call on (the
-- cache trigger watches amr).  The caller holds the user's factor row; the
-- session row is locked after it, and no revoker takes them the other way
-- round.
CREATE FUNCTION authctx._step_up_session(p_session_id uuid, p_method text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE authctx.sessions s
     SET amr = s.amr OPERATOR(pg_catalog.||) ARRAY[p_method]
   WHERE s.id OPERATOR(pg_catalog.=) p_session_id
     AND NOT (p_method OPERATOR(pg_catalog.=) ANY (s.amr));
END
$$;
COMMENT ON FUNCTION authctx._step_up_session(uuid, text) IS
  'internal: add an authentication method to a session''s amr (step-up), visible from the next auth_begin';

-- The second factor's own streak.  TOTP failures count toward the
-- account's lockout (login_throttle) like wrong passwords, but a
-- successful password login clears that streak: someone who knows the
-- password could log in again after every few wrong codes and guess on
-- for ever.  So the codes are also locked by their own streak, read from
-- the durable record of it: the totp_failed events (reason bad_code) of
-- the user since the last totp_verified, within twice lockout_max_delay.
-- At lockout_threshold of them, codes are refused until the last failure
-- plus lockout_base_delay * 2^(n - threshold), at most lockout_max_delay:
-- the password lockout's rule, which no password login resets.
CREATE FUNCTION authctx._totp_locked(p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := pg_catalog.clock_timestamp();
  v_threshold integer := greatest(pg_catalog.current_setting('authctx.lockout_threshold')::integer, 1);
  v_base      interval := authctx._setting('authctx.lockout_base_delay');
  v_max       interval := greatest(authctx._setting('authctx.lockout_max_delay'), v_base);
  v_failures  integer;
  v_last      timestamptz;
BEGIN
  -- (plain operators: with search_path pinned they are pg_catalog's)
  WITH w AS (
    SELECT a.occurred_at, a.event FROM authctx.audit_log a
     WHERE a.occurred_at > v_now - 2 * v_max
       AND a.user_id = p_user_id
       AND (a.event = 'totp_verified'
            OR (a.event = 'totp_failed' AND a.detail ->> 'reason' = 'bad_code')))
  SELECT count(*), max(w.occurred_at) INTO v_failures, v_last
    FROM w
   WHERE w.event = 'totp_failed'
     AND w.occurred_at > coalesce((SELECT max(x.occurred_at) FROM w x
                                    WHERE x.event = 'totp_verified'), '-infinity');
  RETURN v_failures >= v_threshold
     AND v_now < v_last + least(v_base * power(2::double precision, least(v_failures - v_threshold, 30)),
                                v_max);
END
$$;
COMMENT ON FUNCTION authctx._totp_locked(uuid) IS
  'internal: whether a user''s TOTP codes are locked by their own failure streak (totp_failed since the last totp_verified), which a password login does not reset';

CREATE FUNCTION authctx.verify_totp(code text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_ctx    authctx.context := authctx.current();
  v_factor authctx.totp_factors;
  v_locked timestamptz;
  v_code   text := pg_catalog.btrim(verify_totp.code);
  v_step   bigint;
  v_method text;
BEGIN
  IF v_ctx.user_id IS NULL THEN
    RAISE EXCEPTION 'no authentication context in this transaction'
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Call auth_begin(session_token) earlier in the same transaction.';
  END IF;
  IF v_ctx.auth_method IS DISTINCT FROM 'session' OR v_ctx.session_id IS NULL THEN
    RAISE EXCEPTION 'only a session can be stepped up with a second factor'
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'The context of this transaction was not made from a session token.';
  END IF;
  IF v_code IS NULL THEN
    RAISE EXCEPTION 'code must not be null' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on' THEN
    RAISE EXCEPTION 'cannot verify a second factor in a read-only transaction'
      USING ERRCODE = 'read_only_sql_transaction';
  END IF;
  SELECT * INTO v_factor FROM authctx.totp_factors f
   WHERE f.user_id OPERATOR(pg_catalog.=) v_ctx.user_id AND f.secret IS NOT NULL
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no TOTP factor is enabled for this user'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Enrol one with authctx.enroll_totp and authctx.confirm_totp.';
  END IF;
  SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t
   WHERE t.user_id OPERATOR(pg_catalog.=) v_ctx.user_id;
  IF v_locked OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
     OR authctx._totp_locked(v_ctx.user_id) THEN
    PERFORM authctx._totp_failed(v_ctx, 'locked');
    RETURN false;
  END IF;

  IF v_code OPERATOR(pg_catalog.~) '^[0-9]{6}$' THEN
    v_step := authctx._totp_match(v_ctx.user_id, v_factor.secret, v_code,
                                  coalesce(v_factor.last_step, -1), pg_catalog.clock_timestamp());
    IF v_step IS NOT NULL THEN
      UPDATE authctx.totp_factors f SET last_step = v_step
       WHERE f.user_id OPERATOR(pg_catalog.=) v_ctx.user_id;
      v_method := 'totp';
    END IF;
  ELSE
    UPDATE authctx.totp_recovery_codes r SET spent_at = pg_catalog.clock_timestamp()
     WHERE r.user_id OPERATOR(pg_catalog.=) v_ctx.user_id AND r.spent_at IS NULL
       AND authctx._verifier_equal(r.verifier, authctx._recovery_verifier(v_ctx.user_id, v_code));
    IF FOUND THEN
      v_method := 'recovery_code';
    END IF;
  END IF;

  IF v_method IS NULL THEN
    PERFORM authctx._totp_failed(v_ctx, 'bad_code');
    RETURN false;
  END IF;
  PERFORM authctx._step_up_session(v_ctx.session_id, 'otp');
  PERFORM authctx._audit('totp_verified', v_ctx.user_id, v_ctx.tenant_id, v_ctx.session_id,
                         pg_catalog.jsonb_build_object('method', v_method));
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.verify_totp(text) IS
  'inside a session''s auth_begin context: check a TOTP code (each step once) or spend a recovery code; true steps the session up (''otp'' in amr); false is counted toward the lockout; 28000 without context, 42501 for a non-session context';

CREATE FUNCTION authctx.disable_totp(user_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
BEGIN
  PERFORM authctx._require_user(disable_totp.user_id);
  DELETE FROM authctx.totp_recovery_codes r WHERE r.user_id OPERATOR(pg_catalog.=) disable_totp.user_id;
  DELETE FROM authctx.totp_factors f WHERE f.user_id OPERATOR(pg_catalog.=) disable_totp.user_id;
  IF FOUND THEN
    PERFORM authctx._audit('totp_disabled', disable_totp.user_id, NULL, NULL, '{}'::jsonb);
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.disable_totp(uuid) IS
  'remove a user''s TOTP factor (active or pending) and recovery codes, audited';

CREATE TYPE authctx.user_info AS (
  user_id            uuid,
  email              text,
  display_name       text,
  email_verified_at  timestamptz,
  disabled           boolean,
  totp_enabled       boolean,
  created_at         timestamptz
);
COMMENT ON TYPE authctx.user_info IS 'what authctx.user_info returns';

CREATE FUNCTION authctx.user_info(user_id uuid) RETURNS authctx.user_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_info authctx.user_info;
BEGIN
  SELECT u.id, u.email, u.display_name, u.email_verified_at, u.disabled_at IS NOT NULL,
         EXISTS (SELECT 1 FROM authctx.totp_factors f
                  WHERE f.user_id OPERATOR(pg_catalog.=) u.id AND f.secret IS NOT NULL),
         u.created_at
    INTO v_info
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) user_info.user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % does not exist', user_info.user_id USING ERRCODE = 'undefined_object';
  END IF;
  RETURN v_info;
END
$$;
COMMENT ON FUNCTION authctx.user_info(uuid) IS
  'a user''s profile and account state: email, display name, when the email was verified, disabled, TOTP enabled, created (42704 for an unknown user)';

-- privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._totp_enroll(uuid, text), authctx._totp_match(uuid, bytea, text, bigint, timestamptz),
  authctx._totp_code(bytea, bigint, integer), authctx._recovery_codes(integer),
  authctx._recovery_verifier(uuid, text), authctx._check_ttl(interval),
  authctx._lock_one_time_scope(bytea), authctx._spend_one_time_token(text, text),
  authctx._one_time_user(authctx.one_time_tokens),
  authctx._issue_one_time_token(text, uuid, uuid, bytea, text, interval),
  authctx._one_time_login_failed(uuid, text), authctx._totp_failed(authctx.context, text),
  authctx._step_up_session(uuid, text), authctx._totp_locked(uuid),
  authctx.create_one_time_token(uuid, text, interval), authctx.verify_email(text),
  authctx.reset_password(text, text), authctx.login_with_token(text, text),
  authctx.invite_member(text, text, text, interval), authctx.accept_invite(text, uuid),
  authctx.enroll_totp(uuid), authctx.confirm_totp(uuid, text), authctx.verify_totp(text),
  authctx.disable_totp(uuid), authctx.user_info(uuid)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
  authctx.verify_email(text), authctx.reset_password(text, text),
  authctx.login_with_token(text, text), authctx.verify_totp(text)
TO authctx_app;

GRANT EXECUTE ON FUNCTION
  authctx.create_one_time_token(uuid, text, interval),
  authctx.invite_member(text, text, text, interval), authctx.accept_invite(text, uuid),
  authctx.enroll_totp(uuid), authctx.confirm_totp(uuid, text),
  authctx.disable_totp(uuid), authctx.user_info(uuid)
TO authctx_manager;
