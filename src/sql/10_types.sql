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
  'bearer token: kind prefix (axs_ session, axr_ refresh, axk_ API key, axo_ one-time), public id, 256-bit secret, checksum';

-- Internal token helpers: callable only by the extension's own functions.
CREATE FUNCTION authctx._token_new(kind text) RETURNS authctx.token
  AS 'MODULE_PATHNAME', 'authctx_token_new'
  LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._token_new(text) IS 'internal: a fresh random token of kind session, refresh, api_key or one_time';
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
