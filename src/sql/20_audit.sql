-- ---------------------------------------------------------------------------
-- 20 audit: the audit log and the one function that writes it.
--
-- Every event, from every module, SQL or C, is written by authctx._audit
-- below, which holds the one statement that inserts into the log.  SQL
-- functions call it in their caller's transaction; an event that must outlive the
-- caller's transaction (admin_begin's admin_bypass) goes through
-- src/audit.c (AuditWriteDurable), whose task (kind audit, 55_worker.sql)
-- runs authctx._audit_record in a worker's transaction of its own.  The
-- worker's other kinds (failed logins, passkey failures, a reused refresh
-- token) audit through the same _audit, passing the caller's db_role and
-- the time the worker decided.
--
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

-- Internal: append one audit event (SECURITY DEFINER callers only).  The
-- only writer of authctx.audit_log.  db_role defaults to the session user
-- and occurred_at to the clock; a worker passes its caller's role and the
-- time it decided.
-- PL/pgSQL rather than SQL: its INSERT plan is cached per backend, where a
-- SQL function called from PL/pgSQL is parsed and planned on every call
-- (a third of the cost of a revocation).
CREATE FUNCTION authctx._audit(event text, user_id uuid, tenant_id uuid,
                               session_id uuid, detail jsonb DEFAULT '{}',
                               db_role name DEFAULT NULL,
                               occurred_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
  VALUES (COALESCE(_audit.occurred_at, pg_catalog.clock_timestamp()),
          _audit.event, _audit.user_id, _audit.tenant_id, _audit.session_id,
          COALESCE(_audit.db_role, pg_catalog.session_user()),
          COALESCE(_audit.detail, '{}'::jsonb));
END
$$;
COMMENT ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb, name, timestamptz) IS 'internal: append an audit event';
REVOKE ALL ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb, name, timestamptz) FROM PUBLIC;

-- Internal: one audit event handed over as a record (kind audit of the
-- autonomous worker, from AuditWriteDurable in src/audit.c):
-- {event, user_id, tenant_id, session_id, db_role, detail}.  An event is
-- required (22023).  Returns {}.
CREATE FUNCTION authctx._audit_record(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF COALESCE(p_record ->> 'event', '') = '' THEN
    RAISE EXCEPTION 'audit record without an event' USING ERRCODE = '22023';
  END IF;
  PERFORM authctx._audit(p_record ->> 'event',
                         (p_record ->> 'user_id')::uuid,
                         (p_record ->> 'tenant_id')::uuid,
                         (p_record ->> 'session_id')::uuid,
                         COALESCE(p_record -> 'detail', '{}'::jsonb),
                         (p_record ->> 'db_role')::name);
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._audit_record(jsonb) IS 'internal: append an audit event handed over as a record (the worker''s kind audit)';
REVOKE ALL ON FUNCTION authctx._audit_record(jsonb) FROM PUBLIC;
