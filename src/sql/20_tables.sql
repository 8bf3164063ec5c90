-- ---------------------------------------------------------------------------
-- 20 the audit log, written by authctx._audit below for every module.
-- Every other table is declared with the functions that own it (40_identity,
-- 47_issuer, 50_session, 60_webauthn, 80_tenant).  Every table lives in
-- schema authctx and is reachable only through functions: PUBLIC and the
-- authctx_* roles get no privilege on any of them (audit_log excepted:
-- authctx_admin may read it); each file revokes PUBLIC's on its own.
--
-- Shaped for a later distributed engine: tenants could be a reference
-- table, memberships distributed by tenant_id, identity tables by user_id.
-- ---------------------------------------------------------------------------

-- audit ---------------------------------------------------------------------
CREATE TABLE authctx.audit_log (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  event        text NOT NULL,
  user_id      uuid,
  tenant_id    uuid,
  session_id   uuid,
  db_role      name NOT NULL DEFAULT pg_catalog.session_user(),
  detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred_idx ON authctx.audit_log (occurred_at);
COMMENT ON TABLE authctx.audit_log IS 'security events; never stores a token, secret or password';

-- No privilege on these tables for PUBLIC or the roles; admins read the log.
REVOKE ALL ON ALL TABLES IN SCHEMA authctx FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA authctx FROM PUBLIC;
GRANT SELECT ON authctx.audit_log TO authctx_admin;

-- Internal: append one audit event (SECURITY DEFINER callers only).
-- PL/pgSQL rather than SQL: its INSERT plan is cached per backend, where a
-- SQL function called from PL/pgSQL is parsed and planned on every call
-- (a third of the cost of a revocation).
CREATE FUNCTION authctx._audit(event text, user_id uuid, tenant_id uuid,
                               session_id uuid, detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  INSERT INTO authctx.audit_log (event, user_id, tenant_id, session_id, db_role, detail)
  VALUES (_audit.event, _audit.user_id, _audit.tenant_id, _audit.session_id,
          pg_catalog.session_user(), COALESCE(_audit.detail, '{}'::jsonb));
END
$$;
COMMENT ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb) IS 'internal: append an audit event';
REVOKE ALL ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb) FROM PUBLIC;
