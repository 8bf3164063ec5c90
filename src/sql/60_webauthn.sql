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
-- Attempts are decided in the worker.  The contract says the challenge is
-- spent by the attempt, success or not, and that a counter that does not
-- grow marks the credential as possibly cloned and refuses it.  Both must
-- hold although login_webauthn raises 28P01, which rolls the caller's
-- transaction back.  So the whole attempt runs in a background worker's
-- READ COMMITTED transaction (authctx._autonomous_call, kind
-- webauthn_attempt, which runs authctx._webauthn_attempt): the checks
-- above, then on success the new counter and last use, on failure the
-- suspected clone marked (clone_suspected_at: refused from then on;
-- register a new passkey to recover) and the audit record
-- (webauthn_clone_suspected, and login_failed for a login or
-- webauthn_failed for verify_webauthn); it commits, then answers.  The
-- challenge is spent either way (deleted in that transaction), so a
-- success is as single-use as a failure even if the caller rolls back.
-- The worker sees what has committed: a challenge issued, or a credential
-- added, in the caller's still-open transaction does not exist for it
-- (applications issue and use challenges in separate requests).
--
-- login_webauthn first locks the credential owner's row FOR SHARE and the
-- membership (lock order of 50_session.sql, 2 and 3; the worker locks only
-- the credential's row and the challenge, which no caller holds), then
-- issues the session in the caller's transaction when the worker's verdict
-- names that user.  When no worker can decide the attempt (no slot free
-- within 2 s, it failed, a standby), nothing is checked or spent:
-- login_webauthn refuses with 28P01, verify_webauthn answers NULL, and the
-- server log says why.  In a read-only transaction login_webauthn refuses
-- (28P01) before it asks.  The assertion travels to the worker in shared
-- memory, each part capped well above what an authenticator sends
-- (credential id 1024 bytes, authenticator data and signature 64 kB,
-- clientDataJSON just over the 64 kB that _webauthn_verify accepts), so
-- that a caller cannot make the worker map gigabytes.
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

-- The caller's authctx.webauthn_user_verification, from the library's
-- variable (never a placeholder); the worker that decides an assertion is
-- handed it in the payload.
CREATE FUNCTION authctx._webauthn_uv_policy() RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_webauthn_uv_policy'
  LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_uv_policy() IS
  'internal: this backend''s authctx.webauthn_user_verification (required or preferred)';

-- Has the ceremony proved user verification as the policy (required or
-- preferred; anything else counts as required) demands?  flags is
-- authenticatorData's flags byte (UV is 0x04).
CREATE FUNCTION authctx._webauthn_user_verified(flags integer, policy text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (flags & 4) <> 0 OR coalesce(policy = 'preferred', false);
$$;
COMMENT ON FUNCTION authctx._webauthn_user_verified(integer, text) IS
  'internal: the user-verified flag is set, or the policy (authctx.webauthn_user_verification) does not require it';

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
    IF v_failure IS NULL
       AND NOT authctx._webauthn_user_verified(v_flags, authctx._webauthn_uv_policy()) THEN
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
    p_rp_id text, p_origin text, p_user_verification text,
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
  IF NOT authctx._webauthn_user_verified(pg_catalog.get_byte(p_authenticator_data, 32),
                                         p_user_verification) THEN
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
COMMENT ON FUNCTION authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text, text) IS
  'internal: verify a WebAuthn assertion; the user, the credential''s owner, and why it failed';

-- The lasting effects of a failed attempt, in the worker's transaction:
-- spend the challenge (if _webauthn_verify has not already), mark a
-- suspected clone, and audit: login_failed for a login (never counted
-- toward the password lockout), webauthn_failed otherwise.  p_failure:
-- {challenge, credential_id (hex), user_id, reason, clone, stored_count,
-- presented_count, login, method, db_role}.  Kind webauthn_failed runs it
-- too.
CREATE FUNCTION authctx._webauthn_failure(p_failure jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now  timestamptz := pg_catalog.clock_timestamp();
  v_role name := coalesce(p_failure ->> 'db_role', pg_catalog.session_user()::text);
BEGIN
  IF p_failure ->> 'challenge' IS NOT NULL THEN
    DELETE FROM authctx.webauthn_challenges c
     WHERE c.challenge = pg_catalog.decode(p_failure ->> 'challenge', 'hex');
  END IF;
  IF coalesce((p_failure ->> 'clone')::boolean, false) THEN
    UPDATE authctx.webauthn_credentials c
       SET clone_suspected_at = coalesce(c.clone_suspected_at, v_now)
     WHERE c.credential_id = pg_catalog.decode(p_failure ->> 'credential_id', 'hex');
    PERFORM authctx._audit('webauthn_clone_suspected', (p_failure ->> 'user_id')::uuid, NULL, NULL,
              pg_catalog.jsonb_build_object('credential_id', p_failure ->> 'credential_id',
                                            'stored_count', (p_failure ->> 'stored_count')::bigint,
                                            'presented_count', (p_failure ->> 'presented_count')::bigint),
              v_role, v_now);
  END IF;
  IF coalesce((p_failure ->> 'login')::boolean, false) THEN
    RETURN authctx._login_failure((p_failure ->> 'user_id')::uuid, p_failure ->> 'reason',
                                  false, p_failure);
  END IF;
  PERFORM authctx._audit('webauthn_failed', (p_failure ->> 'user_id')::uuid, NULL, NULL,
            pg_catalog.jsonb_build_object('reason', p_failure ->> 'reason',
                                          'credential_id', p_failure ->> 'credential_id'),
            v_role, v_now);
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_failure(jsonb) IS
  'internal: spend the challenge of a failed WebAuthn attempt, mark a suspected clone, audit the failure (in the worker''s transaction)';

-- One attempt, decided in the worker's own READ COMMITTED transaction (kind
-- webauthn_attempt; see the header).  p_attempt: the assertion's parts
-- (hex), rp_id, origin, login, and for a login the user the caller locked
-- (user_id) and whether that user is a member of the tenant asked for
-- (member), method and db_role.  {user_id} on success, else {} once the
-- failure's effects are written.
CREATE FUNCTION authctx._webauthn_attempt(p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v         record;
  v_cred    bytea := pg_catalog.decode(p_attempt ->> 'credential_id', 'hex');
  v_login   boolean := coalesce((p_attempt ->> 'login')::boolean, false);
  v_failure text;
BEGIN
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a webauthn attempt must be decided in a READ COMMITTED transaction'
      USING ERRCODE = '25000';
  END IF;
  SELECT * INTO v
    FROM authctx._webauthn_verify(v_cred,
                                  pg_catalog.decode(p_attempt ->> 'authenticator_data', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'client_data_json', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'signature', 'hex'),
                                  p_attempt ->> 'rp_id', p_attempt ->> 'origin',
                                  p_attempt ->> 'user_verification');
  v_failure := v.failure;
  IF v_failure IS NULL AND v_login THEN
    IF v.verified_user IS DISTINCT FROM (p_attempt ->> 'user_id')::uuid THEN
      -- the caller locked another user (or none): the credential moved
      v_failure := 'changed';
    ELSIF NOT coalesce((p_attempt ->> 'member')::boolean, false) THEN
      v_failure := 'not_member';
    END IF;
  END IF;
  IF v_failure IS NULL THEN
    RETURN pg_catalog.jsonb_build_object('user_id', v.verified_user);
  END IF;
  -- the challenge is already spent (deleted above) when it was found
  PERFORM authctx._webauthn_failure(p_attempt || pg_catalog.jsonb_build_object(
    'challenge', NULL,
    'user_id', coalesce(v.verified_user, v.credential_user),
    'reason', v_failure,
    'clone', v_failure = 'counter',
    'stored_count', v.stored_count,
    'presented_count', v.presented_count));
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_attempt(jsonb) IS
  'internal: decide one WebAuthn assertion in the worker''s transaction (challenge spent, checks, counter or clone mark, failure audited); {user_id} on success';

-- An assertion as the worker takes it: each part in hex, capped (see the
-- header); a capped part never verifies, and the challenge it names is
-- still spent.
CREATE FUNCTION authctx._webauthn_payload(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.jsonb_build_object(
    'credential_id', pg_catalog.encode(pg_catalog.substr(p_credential_id, 1, 1024), 'hex'),
    'authenticator_data', pg_catalog.encode(pg_catalog.substr(p_authenticator_data, 1, 65536), 'hex'),
    'client_data_json', pg_catalog.encode(pg_catalog.substr(p_client_data_json, 1, 65537), 'hex'),
    'signature', pg_catalog.encode(pg_catalog.substr(p_signature, 1, 65536), 'hex'),
    'rp_id', pg_catalog.substr(p_rp_id, 1, 4096),
    'origin', pg_catalog.substr(p_origin, 1, 4096));
$$;
COMMENT ON FUNCTION authctx._webauthn_payload(bytea, bytea, bytea, bytea, text, text) IS
  'internal: a WebAuthn assertion as the worker''s payload (hex, each part capped)';

CREATE FUNCTION authctx.verify_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- NULL, as for any failed assertion, when no worker could decide it
  RETURN (authctx._attempt_in_worker('webauthn_attempt',
            authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
            || pg_catalog.jsonb_build_object('login', false,
                                             'user_verification', authctx._webauthn_uv_policy(),
                                             'db_role', pg_catalog.session_user()))
          ->> 'user_id')::uuid;
END
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
SET lock_timeout = '10s'
AS $$
DECLARE
  v_user    uuid;
  v_tenant  uuid;
  v_member  boolean := false;
  v_verdict jsonb;
BEGIN
  -- a read-only transaction can issue nothing: refuse before any check
  IF pg_catalog.current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the credential's owner FOR SHARE (lock order, 2) and the membership (3)
  -- before the assertion is checked, as login does
  SELECT u.id INTO v_user
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = login_webauthn.credential_id
     FOR SHARE OF u;
  IF v_user IS NOT NULL THEN
    SELECT t.tenant_id, t.member INTO v_tenant, v_member
      FROM authctx._login_tenant(v_user, login_webauthn.tenant) t;
  END IF;
  v_verdict := authctx._attempt_in_worker('webauthn_attempt',
                 authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
                 || pg_catalog.jsonb_build_object('login', true, 'user_id', v_user,
                                                  'member', v_member, 'method', 'webauthn',
                                                  'user_verification', authctx._webauthn_uv_policy(),
                                                  'db_role', pg_catalog.session_user()));
  IF v_user IS NULL OR (v_verdict ->> 'user_id')::uuid IS DISTINCT FROM v_user THEN
    -- the challenge spend and the login_failed record were written by the
    -- worker; a passkey failure does not count toward the password lockout
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- a session, a refresh token and the login audit record
  RETURN authctx._issue_session(v_user, v_tenant, 'webauthn',
                                pg_catalog.jsonb_build_object('method', 'webauthn'));
END
$$;
COMMENT ON FUNCTION authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text) IS
  'log in with a WebAuthn assertion: a new session and refresh token; the attempt is decided in a background worker''s transaction; failure, or no worker to decide, raises 28P01';

-- privileges -----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._webauthn_parse_registration(bytea, text),
  authctx._webauthn_client_data(bytea, text, text),
  authctx._webauthn_uv_policy(),
  authctx._webauthn_user_verified(integer, text),
  authctx.register_webauthn(uuid, bytea, bytea, text, text, text),
  authctx._webauthn_key_alg(bytea),
  authctx._webauthn_check_assertion(bytea, bytea, bytea, bytea, text),
  authctx._webauthn_b64url_decode(text),
  authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text, text),
  authctx._webauthn_failure(jsonb), authctx._webauthn_attempt(jsonb),
  authctx._webauthn_payload(bytea, bytea, bytea, bytea, text, text),
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
