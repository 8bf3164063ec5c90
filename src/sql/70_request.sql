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

REVOKE ALL ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() TO authctx_app;
REVOKE ALL ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) TO authctx_app;
