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

REVOKE ALL ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(text), public.auth_begin(text, text),
  public.auth_end() TO authctx_app;
