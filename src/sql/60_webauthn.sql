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

-- tables ----------------------------------------------------------------------
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

REVOKE ALL ON TABLE authctx.webauthn_credentials, authctx.webauthn_challenges FROM PUBLIC;

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
