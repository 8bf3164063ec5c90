-- authctx 0.1.0 -> 0.2.0
--
-- Every change to the schema since 0.1.0, in the order the sections were
-- added.  The result must equal a fresh install of 0.2.0 (test/t/050_upgrade.pl
-- compares the two), and no row may be lost.
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION authctx UPDATE TO '0.2.0'" to load this file. \quit

-- sec-context: auth_begin for character varying
-- A function another role created in public with one of these signatures
-- (it would have received every token bound as varchar) makes the update
-- fail here, on purpose: inspect it, drop it, and update again.
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
            WHERE p.pronamespace OPERATOR(pg_catalog.=) 'public'::regnamespace
              AND p.proname OPERATOR(pg_catalog.=) 'auth_begin'
              AND p.proargtypes::pg_catalog.oid[] OPERATOR(pg_catalog.&&)
                  ARRAY['pg_catalog.varchar'::pg_catalog.regtype::pg_catalog.oid] LOOP
    RAISE EXCEPTION 'function % exists and is not part of authctx', f
      USING ERRCODE = '42723',
            HINT = 'It may have been created to receive tokens bound as character varying: inspect it, drop it, then run ALTER EXTENSION authctx UPDATE again.';
  END LOOP;
END
$$;

-- The same entry point for character varying, every combination of it with
-- text: drivers bind strings as varchar (pgjdbc does by default), and
-- function resolution prefers an exact match, so a public.auth_begin(varchar)
-- created by a role with CREATE on public would receive every such token.
-- With these in place, no signature another role can create in public
-- matches a text or varchar call better than ours (an identical signature in
-- a schema earlier in the search path still would: call
-- public.auth_begin($1::text), and see isolation_report).
CREATE FUNCTION public.auth_begin(token character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying) IS
  'authctx: auth_begin(token) for a token bound as character varying';

CREATE FUNCTION public.auth_begin(token character varying, tenant character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying, character varying) IS
  'authctx: auth_begin(token, tenant) for arguments bound as character varying';

CREATE FUNCTION public.auth_begin(token text, tenant character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(text, character varying) IS
  'authctx: auth_begin(token, tenant) for a tenant bound as character varying';

CREATE FUNCTION public.auth_begin(token character varying, tenant text) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying, text) IS
  'authctx: auth_begin(token, tenant) for a token bound as character varying';

REVOKE ALL ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) TO authctx_app;

-- sec-context: API key scopes are validated (no separator, no truncation)
-- The scope rule lives in C (session.c), where auth_begin checks the stored
-- scopes again: 1 to 128 characters from A-Z a-z 0-9 _ . : / * + -, at most
-- 64 scopes, at most 1023 bytes joined.
CREATE FUNCTION authctx._check_scopes(scopes text[]) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_check_scopes'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._check_scopes(text[]) IS
  'internal: raises 22023 unless the array is a valid list of API key scopes';
REVOKE ALL ON FUNCTION authctx._check_scopes(text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx.create_api_key(user_id uuid, tenant text, name text,
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
  PERFORM authctx._check_scopes(v_scopes);
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

-- Keys stored by 0.1.0 with scopes that break the rule are left as they
-- are: auth_begin refuses them (28000), list_api_keys still shows them, and
-- revoke_api_key or a new key replaces them.  Say how many there are.
DO $$
DECLARE
  k record;
  n bigint := 0;
BEGIN
  FOR k IN SELECT a.scopes FROM authctx.api_keys a WHERE a.revoked_at IS NULL LOOP
    BEGIN
      PERFORM authctx._check_scopes(k.scopes);
    EXCEPTION WHEN invalid_parameter_value THEN
      n := n OPERATOR(pg_catalog.+) 1;
    END;
  END LOOP;
  IF n OPERATOR(pg_catalog.>) 0 THEN
    RAISE WARNING 'API keys whose scopes authctx 0.2.0 does not accept: %; auth_begin will refuse them', n
      USING HINT = 'Find them with authctx.list_api_keys, revoke them and create new keys with valid scopes.';
  END IF;
END
$$;
