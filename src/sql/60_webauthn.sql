-- ---------------------------------------------------------------------------
-- 60 webauthn: passkeys.  Challenges, credential registration (by key, or
-- by the registration ceremony), assertion verification and login.  The
-- cryptography and the CBOR parsing are in C (src/webauthn.c,
-- src/webauthn_parse.c); the flow is here.
--
-- clientDataJSON, for both ceremonies (_webauthn_client_data): a JSON
-- object whose challenge decodes (base64url) to a challenge issued here ->
-- the challenge is spent (deleted) now, whatever follows -> unexpired ->
-- type is "webauthn.get" (assertion) or "webauthn.create" (registration) ->
-- origin matches -> crossOrigin absent or false -> topOrigin absent or
-- equal to origin.  User verification (_webauthn_user_verified): the
-- authenticator's UV flag, unless authctx.webauthn_user_verification
-- (superuser) is 'preferred'.
--
-- Order of checks in _webauthn_verify, each failure answering NULL with a
-- reason that only the audit log sees: the client data as above ->
-- credential known -> user not disabled -> rpIdHash, user-present flag and
-- signature (C) -> user verification -> the signature counter grows ->
-- counter and last use recorded.
--
-- register_webauthn (authctx_manager, like add_webauthn_credential): the
-- client data as above -> the attestation object (C: rpIdHash, user
-- present, attested credential data, a usable EdDSA or ES256 COSE_Key, a
-- credential id of 1 to 1023 bytes, extensions well formed, attestation
-- "none" or "packed" self-attestation, nothing else) -> user verification
-- -> a credential id not registered yet -> stored as add_webauthn_credential
-- stores it.  Attestation statements are not evaluated: the "packed"
-- self-attestation signature is not checked and no certificate is trusted,
-- so a registration proves possession of the new key's authenticator
-- response, not the authenticator's make.  Any failure is one generic
-- 22023; the reason goes to the audit log (webauthn_failed, reason
-- "registration: ..."), and the challenge is spent, out of band as below.
-- Caller errors (NULL arguments 22004, an unknown user 42704) are raised
-- before the ceremony is looked at, and spend nothing.
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

CREATE FUNCTION authctx._webauthn_parse_registration(attestation_object bytea, rp_id text,
    OUT status integer, OUT credential_id bytea, OUT public_key bytea,
    OUT alg integer, OUT sign_count bigint, OUT flags integer, OUT fmt text)
  AS 'MODULE_PATHNAME', 'authctx_webauthn_parse_registration'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_parse_registration(bytea, text) IS
  'internal: a registration''s attestation object read strictly: status 0 and the credential, or -1 malformed, -2 rp_id, -3 user not present, -6 no attested credential, -7 attestation format, -8 key, -9 credential id length';

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

-- The clientDataJSON rules of both ceremonies, in one place: the challenge
-- (spent here, whatever follows), its expiry, the type, the origin,
-- crossOrigin and topOrigin.  failure is NULL when everything holds;
-- challenge is the decoded challenge whenever there was one.
CREATE FUNCTION authctx._webauthn_client_data(p_client_data_json bytea,
    p_type text, p_origin text, OUT failure text, OUT challenge bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_client   jsonb;
  v_chal     bytea;
  v_expires  timestamptz;
BEGIN
  failure := 'malformed';
  IF pg_catalog.octet_length(p_client_data_json) > 65536 THEN
    RETURN;
  END IF;
  -- UTF-8 JSON; garbage of any kind is a failed check
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
     OR (v_client ->> 'type') <> p_type THEN
    failure := 'type';
    RETURN;
  END IF;
  IF pg_catalog.jsonb_typeof(v_client -> 'origin') IS DISTINCT FROM 'string'
     OR (v_client ->> 'origin') <> p_origin THEN
    failure := 'origin';
    RETURN;
  END IF;
  -- made in a cross-origin iframe: refused, whatever the value's spelling
  -- (only an absent member or JSON false is same-origin)
  IF v_client ? 'crossOrigin' AND (v_client -> 'crossOrigin') <> 'false'::jsonb THEN
    failure := 'cross_origin';
    RETURN;
  END IF;
  IF v_client ? 'topOrigin'
     AND (v_client -> 'topOrigin') IS DISTINCT FROM pg_catalog.to_jsonb(p_origin) THEN
    failure := 'top_origin';
    RETURN;
  END IF;
  failure := NULL;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_client_data(bytea, text, text) IS
  'internal: check a ceremony''s clientDataJSON and spend its challenge; why it failed, or NULL';

-- Has the ceremony proved user verification as authctx.webauthn_user_verification
-- demands?  flags is authenticatorData's flags byte (UV is 0x04).
CREATE FUNCTION authctx._webauthn_user_verified(flags integer) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (flags & 4) <> 0
      OR pg_catalog.current_setting('authctx.webauthn_user_verification') = 'preferred';
$$;
COMMENT ON FUNCTION authctx._webauthn_user_verified(integer) IS
  'internal: the user-verified flag is set, or authctx.webauthn_user_verification does not require it';

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

-- The registration ceremony (navigator.credentials.create), checked as a
-- relying party must, then stored as add_webauthn_credential stores a key.
-- The checks run in a subtransaction: on any failure it is rolled back (no
-- row, no lock) and a background worker spends the challenge and writes the
-- audit record in its own transaction, before the generic 22023 is raised.
CREATE FUNCTION authctx.register_webauthn(user_id uuid, attestation_object bytea,
    client_data_json bytea, rp_id text, origin text, name text DEFAULT NULL)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_failure  text;
  v_chal     bytea;
  v_status   integer;
  v_cred     bytea;
  v_key      bytea;
  v_alg      integer;
  v_count    bigint;
  v_flags    integer;
  v_fmt      text;
BEGIN
  IF register_webauthn.user_id IS NULL OR register_webauthn.attestation_object IS NULL
     OR register_webauthn.client_data_json IS NULL OR register_webauthn.rp_id IS NULL
     OR register_webauthn.origin IS NULL THEN
    RAISE EXCEPTION 'user_id, attestation_object, client_data_json, rp_id and origin must not be null'
      USING ERRCODE = '22004';
  END IF;
  PERFORM 1 FROM authctx.users u
    WHERE u.id = register_webauthn.user_id
    FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user does not exist' USING ERRCODE = '42704';
  END IF;

  BEGIN
    SELECT c.failure, c.challenge INTO v_failure, v_chal
      FROM authctx._webauthn_client_data(register_webauthn.client_data_json,
                                         'webauthn.create', register_webauthn.origin) c;
    IF v_failure IS NULL THEN
      SELECT r.status, r.credential_id, r.public_key, r.alg, r.sign_count, r.flags, r.fmt
        INTO v_status, v_cred, v_key, v_alg, v_count, v_flags, v_fmt
        FROM authctx._webauthn_parse_registration(register_webauthn.attestation_object,
                                                  register_webauthn.rp_id) r;
      v_failure := CASE v_status
                     WHEN 0 THEN NULL
                     WHEN -2 THEN 'rp_id'
                     WHEN -3 THEN 'user_presence'
                     WHEN -6 THEN 'no_credential'
                     WHEN -7 THEN 'attestation'
                     WHEN -8 THEN 'key'
                     WHEN -9 THEN 'credential_id'
                     ELSE 'malformed'
                   END;
    END IF;
    IF v_failure IS NULL AND NOT authctx._webauthn_user_verified(v_flags) THEN
      v_failure := 'user_verification';
    END IF;
    IF v_failure IS NULL THEN
      INSERT INTO authctx.webauthn_credentials
             (credential_id, user_id, public_key, alg, sign_count, name)
      VALUES (v_cred, register_webauthn.user_id, v_key, v_alg, v_count,
              register_webauthn.name)
      ON CONFLICT DO NOTHING;
      IF NOT FOUND THEN
        v_failure := 'credential_exists';
      END IF;
    END IF;
    IF v_failure IS NOT NULL THEN
      RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = 'AXW00';
    END IF;
  EXCEPTION WHEN SQLSTATE 'AXW00' THEN
    NULL;                       -- rolled back: no spend, no row
  END;

  IF v_failure IS NULL THEN
    PERFORM authctx._audit('webauthn_credential_added', register_webauthn.user_id,
                           NULL, NULL,
                           pg_catalog.jsonb_build_object('alg', v_alg,
                                                         'name', register_webauthn.name,
                                                         'attestation', v_fmt));
    RETURN v_cred;
  END IF;

  -- in a transaction of its own: our caller's rollback must not undo it
  PERFORM authctx._autonomous('webauthn_failed', pg_catalog.jsonb_build_object(
    'challenge', pg_catalog.encode(v_chal, 'hex'),
    'credential_id', pg_catalog.encode(v_cred, 'hex'),
    'user_id', register_webauthn.user_id,
    'reason', 'registration: ' || v_failure,
    'clone', false,
    'login', false,
    'db_role', pg_catalog.session_user()));
  RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = '22023',
    DETAIL = 'The attestation object or client data does not show a valid registration of a supported passkey for this challenge, relying party and origin.';
END
$$;
COMMENT ON FUNCTION authctx.register_webauthn(uuid, bytea, bytea, text, text, text) IS
  'register a passkey from a navigator.credentials.create() response (attestation none or packed self-attestation, not evaluated); its credential id; any failure raises 22023, stores nothing and spends the challenge';

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
  v_cred     record;
  v_counter  bigint;
BEGIN
  failure := 'malformed';
  IF p_credential_id IS NULL OR p_authenticator_data IS NULL
     OR p_client_data_json IS NULL OR p_signature IS NULL
     OR p_rp_id IS NULL OR p_origin IS NULL THEN
    RETURN;
  END IF;

  -- clientDataJSON; the challenge is spent here, whatever follows
  SELECT c.failure, c.challenge INTO failure, challenge
    FROM authctx._webauthn_client_data(p_client_data_json, 'webauthn.get', p_origin) c;
  IF failure IS NOT NULL THEN
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
  -- the signature covers the flags: a byte C has just read (authData >= 37 bytes)
  IF NOT authctx._webauthn_user_verified(pg_catalog.get_byte(p_authenticator_data, 32)) THEN
    failure := 'user_verification';
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
  authctx._webauthn_parse_registration(bytea, text),
  authctx._webauthn_client_data(bytea, text, text),
  authctx._webauthn_user_verified(integer),
  authctx.register_webauthn(uuid, bytea, bytea, text, text, text),
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
  authctx.register_webauthn(uuid, bytea, bytea, text, text, text),
  authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text)
TO authctx_manager;
