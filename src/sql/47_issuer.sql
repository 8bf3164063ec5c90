-- ---------------------------------------------------------------------------
-- 47 issuer: external identity providers (OpenID Connect / JWT access
-- tokens).  The registry is here; parsing, key validation, the per-backend
-- key cache and verification are in C (src/issuer.c, over src/jws.c,
-- src/jwk.c, src/pkey.c and src/sjson.c).
--
-- A key set is parsed and validated once, when it is registered
-- (authctx._issuer_parse_jwks), and stored in parsed binary form, one row
-- per usable key: the 32-byte Ed25519 key, the 65-byte uncompressed P-256
-- point, or the RSA key's DER SubjectPublicKeyInfo.  Verification reads
-- those rows by primary key and never parses JSON keys again.  Rows of
-- issuer_keys are numbered densely from 0 (ordinal), in the set's order.
--
-- Coherence: a statement trigger on each table (ENABLE ALWAYS, so logical
-- replication apply fires it too) sends a relcache invalidation at commit;
-- every backend drops its cached keys when it next verifies a token (see
-- the header of src/issuer.c).
--
-- Both tables hold configuration that backups must keep: they are
-- registered with pg_extension_config_dump.
--
-- Errors:
--   22004 null_value_not_allowed   a required argument NULL
--   22023 invalid_parameter_value  a bad issuer, audience, claim name or
--                                  leeway; a key set with a private,
--                                  malformed or invalid key, or with no
--                                  usable key (naming the key, never its
--                                  material)
--   23505 unique_violation         issuer already registered
--   42704 undefined_object         unknown issuer
--   42501 (by privilege)           callers other than authctx_admin
-- ---------------------------------------------------------------------------

CREATE TABLE authctx.issuers (
  issuer           text PRIMARY KEY
                   CHECK (pg_catalog.octet_length(issuer) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(issuer) OPERATOR(pg_catalog.<=) 1024),
  audience         text NOT NULL
                   CHECK (pg_catalog.octet_length(audience) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(audience) OPERATOR(pg_catalog.<=) 1024),
  tenant_claim     text
                   CHECK (pg_catalog.octet_length(tenant_claim) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(tenant_claim) OPERATOR(pg_catalog.<=) 1024),
  leeway           interval NOT NULL DEFAULT '30 seconds'
                   CHECK (leeway OPERATOR(pg_catalog.>=) interval '0'
                          AND leeway OPERATOR(pg_catalog.<=) interval '10 minutes'),
  created_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  keys_changed_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.issuers IS
  'trusted external token issuers (exact iss), the audience their tokens must carry, tenant claim and clock leeway';

CREATE TABLE authctx.issuer_keys (
  issuer      text NOT NULL REFERENCES authctx.issuers (issuer)
              ON DELETE CASCADE ON UPDATE CASCADE,
  ordinal     integer NOT NULL CHECK (ordinal OPERATOR(pg_catalog.>=) 0),
  kid         text,                 -- NULL when the JWK has none
  kty         text NOT NULL
              CHECK (kty OPERATOR(pg_catalog.=) ANY (ARRAY['OKP', 'EC', 'RSA'])),
  alg         text NOT NULL
              CHECK (alg OPERATOR(pg_catalog.=) ANY (ARRAY['EdDSA', 'ES256', 'RS256'])),
  public_key  bytea NOT NULL,       -- Ed25519 key, P-256 point, or RSA DER SPKI
  PRIMARY KEY (issuer, ordinal),
  UNIQUE (issuer, kid)
);
COMMENT ON TABLE authctx.issuer_keys IS
  'verification keys of each issuer, parsed and validated at registration: public parts only';

REVOKE ALL ON TABLE authctx.issuers, authctx.issuer_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('authctx.issuers', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.issuer_keys', '');

-- C helpers ------------------------------------------------------------------

CREATE FUNCTION authctx._issuer_parse_jwks(jwks jsonb,
    OUT kid text, OUT kty text, OUT alg text, OUT public_key bytea)
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'authctx_issuer_parse_jwks'
  LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION authctx._issuer_parse_jwks(jsonb) IS
  'internal: the usable keys of a JWK Set, parsed and validated, in stored form; 22023 for a private, malformed or invalid key or no usable key';

CREATE FUNCTION authctx._issuer_invalidate() RETURNS trigger
  AS 'MODULE_PATHNAME', 'authctx_issuer_invalidate'
  LANGUAGE C;
COMMENT ON FUNCTION authctx._issuer_invalidate() IS
  'internal trigger: every backend drops its cached issuer keys when the change commits';

CREATE FUNCTION authctx._jwt_verify(token text, now timestamptz DEFAULT NULL)
  RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_jwt_verify'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._jwt_verify(text, timestamptz) IS
  'internal: verify a JWT against the registry at now (default: the wall clock); its claims and what auth_begin needs, or 28000';

CREATE FUNCTION authctx._jwt_reason(token text, now timestamptz DEFAULT NULL)
  RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_jwt_reason'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._jwt_reason(text, timestamptz) IS
  'internal (tests, diagnosis): why _jwt_verify refuses a token, or ok';

CREATE TRIGGER issuer_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authctx.issuers
  FOR EACH STATEMENT EXECUTE FUNCTION authctx._issuer_invalidate();
CREATE TRIGGER issuer_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authctx.issuer_keys
  FOR EACH STATEMENT EXECUTE FUNCTION authctx._issuer_invalidate();
ALTER TABLE authctx.issuers ENABLE ALWAYS TRIGGER issuer_invalidate;
ALTER TABLE authctx.issuer_keys ENABLE ALWAYS TRIGGER issuer_invalidate;

-- Store the keys of a set for an issuer (rows numbered from 0); their kids.
CREATE FUNCTION authctx._issuer_store_keys(issuer text, jwks jsonb)
RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kids text[];
BEGIN
  INSERT INTO authctx.issuer_keys (issuer, ordinal, kid, kty, alg, public_key)
  SELECT _issuer_store_keys.issuer, (k.n OPERATOR(pg_catalog.-) 1)::integer,
         k.kid, k.kty, k.alg, k.public_key
    FROM authctx._issuer_parse_jwks(_issuer_store_keys.jwks)
         WITH ORDINALITY AS k(kid, kty, alg, public_key, n);
  SELECT pg_catalog.array_agg(k.kid ORDER BY k.ordinal) INTO v_kids
    FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) _issuer_store_keys.issuer;
  RETURN v_kids;
END
$$;
COMMENT ON FUNCTION authctx._issuer_store_keys(text, jsonb) IS
  'internal: parse a key set and store its usable keys for an issuer; their kids in order';

-- registry ------------------------------------------------------------------

CREATE FUNCTION authctx.add_issuer(issuer text, audience text, jwks jsonb,
    tenant_claim text DEFAULT NULL, leeway interval DEFAULT '30 seconds')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kids text[];
  v_now  timestamptz;
BEGIN
  IF add_issuer.issuer IS NULL OR add_issuer.audience IS NULL
     OR add_issuer.jwks IS NULL OR add_issuer.leeway IS NULL THEN
    RAISE EXCEPTION 'issuer, audience, jwks and leeway must not be null'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF pg_catalog.octet_length(add_issuer.issuer) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid issuer'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An issuer is the exact "iss" string of its tokens, 1 to 1024 bytes.';
  END IF;
  IF pg_catalog.octet_length(add_issuer.audience) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid audience'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An audience is the exact "aud" string the issuer''s tokens must carry, 1 to 1024 bytes.';
  END IF;
  IF pg_catalog.octet_length(add_issuer.tenant_claim) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid tenant claim name'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The tenant claim is the name of a top-level claim, 1 to 1024 bytes, or NULL.';
  END IF;
  IF add_issuer.leeway OPERATOR(pg_catalog.<) interval '0'
     OR add_issuer.leeway OPERATOR(pg_catalog.>) interval '10 minutes' THEN
    RAISE EXCEPTION 'invalid leeway'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The clock leeway is between 0 and 10 minutes.';
  END IF;

  v_now := pg_catalog.clock_timestamp();
  INSERT INTO authctx.issuers (issuer, audience, tenant_claim, leeway,
                               created_at, keys_changed_at)
  VALUES (add_issuer.issuer, add_issuer.audience, add_issuer.tenant_claim,
          add_issuer.leeway, v_now, v_now)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is already registered', add_issuer.issuer
      USING ERRCODE = 'unique_violation',
            HINT = 'Use authctx.set_issuer_keys to replace its keys, or remove it first.';
  END IF;
  v_kids := authctx._issuer_store_keys(add_issuer.issuer, add_issuer.jwks);

  PERFORM authctx._audit('issuer_added', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object(
                           'issuer', add_issuer.issuer,
                           'audience', add_issuer.audience,
                           'key_ids', pg_catalog.to_jsonb(v_kids),
                           'tenant_claim', add_issuer.tenant_claim,
                           'leeway', add_issuer.leeway::text));
END
$$;
COMMENT ON FUNCTION authctx.add_issuer(text, text, jsonb, text, interval) IS
  'register a trusted token issuer (exact iss), the audience its tokens must carry, its JWK Set, an optional tenant claim and a clock leeway';

CREATE FUNCTION authctx.set_issuer_keys(issuer text, jwks jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old text[];
  v_new text[];
BEGIN
  IF set_issuer_keys.issuer IS NULL OR set_issuer_keys.jwks IS NULL THEN
    RAISE EXCEPTION 'issuer and jwks must not be null'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  PERFORM 1 FROM authctx.issuers i
    WHERE i.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer
    FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is not registered', set_issuer_keys.issuer
      USING ERRCODE = 'undefined_object';
  END IF;

  SELECT pg_catalog.array_agg(k.kid ORDER BY k.ordinal) INTO v_old
    FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;
  DELETE FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;
  v_new := authctx._issuer_store_keys(set_issuer_keys.issuer, set_issuer_keys.jwks);
  UPDATE authctx.issuers i SET keys_changed_at = pg_catalog.clock_timestamp()
   WHERE i.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;

  PERFORM authctx._audit('issuer_keys_changed', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object(
                           'issuer', set_issuer_keys.issuer,
                           'old_key_ids', pg_catalog.to_jsonb(v_old),
                           'key_ids', pg_catalog.to_jsonb(v_new)));
END
$$;
COMMENT ON FUNCTION authctx.set_issuer_keys(text, jsonb) IS
  'replace an issuer''s key set atomically (rotation: publish old and new keys together, later the new ones only)';

CREATE FUNCTION authctx.remove_issuer(issuer text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM authctx.issuers i
   WHERE i.issuer OPERATOR(pg_catalog.=) remove_issuer.issuer;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is not registered', remove_issuer.issuer
      USING ERRCODE = 'undefined_object';
  END IF;
  PERFORM authctx._audit('issuer_removed', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object('issuer', remove_issuer.issuer));
END
$$;
COMMENT ON FUNCTION authctx.remove_issuer(text) IS
  'remove a trusted issuer and its keys; its tokens stop working at the next verification';

CREATE FUNCTION authctx.list_issuers()
RETURNS TABLE (issuer text, audience text, key_ids text[], tenant_claim text,
               leeway interval, created_at timestamptz, keys_changed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.issuer, i.audience,
         ARRAY(SELECT k.kid FROM authctx.issuer_keys k
                WHERE k.issuer OPERATOR(pg_catalog.=) i.issuer
                ORDER BY k.ordinal),
         i.tenant_claim, i.leeway, i.created_at, i.keys_changed_at
    FROM authctx.issuers i
   ORDER BY i.issuer
$$;
COMMENT ON FUNCTION authctx.list_issuers() IS
  'registered issuers with their audience, key ids (NULL for a key without kid), tenant claim, leeway and dates';

REVOKE ALL ON FUNCTION
  authctx._issuer_parse_jwks(jsonb),
  authctx._issuer_invalidate(),
  authctx._jwt_verify(text, timestamptz),
  authctx._jwt_reason(text, timestamptz),
  authctx._issuer_store_keys(text, jsonb),
  authctx.add_issuer(text, text, jsonb, text, interval),
  authctx.set_issuer_keys(text, jsonb),
  authctx.remove_issuer(text),
  authctx.list_issuers()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  authctx.add_issuer(text, text, jsonb, text, interval),
  authctx.set_issuer_keys(text, jsonb),
  authctx.remove_issuer(text),
  authctx.list_issuers()
TO authctx_admin;
