-- ---------------------------------------------------------------------------
-- 30 context accessors: STABLE, PARALLEL SAFE, callable in RLS policies by
-- every role.  NULL (false) without a context, so policies fail closed.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.user_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_user_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.user_id() IS 'user of this transaction''s context, or NULL';

CREATE FUNCTION authctx.tenant_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_tenant_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.tenant_id() IS 'tenant of this transaction''s context, or NULL (raises 28000 when authctx.missing_context = error)';

CREATE FUNCTION authctx.role() RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.role() IS 'membership role of the context''s user in its tenant, or NULL';

CREATE FUNCTION authctx.session_id() RETURNS uuid
  AS 'MODULE_PATHNAME', 'authctx_session_id' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.session_id() IS 'session (or API key) id of this transaction''s context, or NULL';

CREATE FUNCTION authctx.current() RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_current' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.current() IS 'the whole context, or NULL';

CREATE FUNCTION authctx.has_role(text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_has_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.has_role(text) IS 'true when the context''s membership role equals the argument';

CREATE FUNCTION authctx.has_scope(text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_has_scope' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.has_scope(text) IS 'true for sessions; for API keys, true when the key has the scope';

CREATE FUNCTION authctx.is_authenticated() RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_is_authenticated' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.is_authenticated() IS 'true when auth_begin succeeded in this transaction';

CREATE FUNCTION authctx.admin_bypass() RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_admin_bypass' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.admin_bypass() IS 'true when admin_begin is active in this transaction';

CREATE FUNCTION authctx.amr() RETURNS text[]
  AS 'MODULE_PATHNAME', 'authctx_amr' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.amr() IS 'how the context''s user authenticated (a JWT''s amr claim; a session''s login methods: pwd, webauthn; empty for create_session and API keys), or NULL';

CREATE FUNCTION authctx.claims() RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_claims' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.claims() IS 'the verified claims of the context''s JWT, or NULL (no context, or not a JWT)';

-- Accessors are the only functions PUBLIC may execute.
GRANT EXECUTE ON FUNCTION authctx.user_id(), authctx.tenant_id(), authctx.role(),
  authctx.session_id(), authctx.current(), authctx.has_role(text),
  authctx.has_scope(text), authctx.is_authenticated(), authctx.amr(),
  authctx.claims() TO PUBLIC;
REVOKE ALL ON FUNCTION authctx.admin_bypass() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.admin_bypass() TO authctx_admin;
