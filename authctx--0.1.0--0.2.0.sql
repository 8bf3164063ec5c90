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
