-- ---------------------------------------------------------------------------
-- 55 worker: records that must outlive the caller's transaction.
--
-- authctx._autonomous_call(kind, payload) hands a record to a background
-- worker (src/worker.c) that runs authctx._autonomous_apply(kind, payload)
-- in a transaction of its own, as the extension's owner with pinned
-- settings, and waits for it; it returns what _autonomous_apply returned,
-- or raises 55000 (naming the kind, never the payload) when the record
-- could not be written: no worker slot became free, the worker failed or
-- did not commit, or this is a standby.  The caller's later ERROR or
-- ROLLBACK cannot undo what the worker committed.  authctx._autonomous is
-- the same call returning true (0.1.0's SQL calls it); it raises the same
-- error.  _autonomous_apply only dispatches: each kind runs one function
-- of the module that owns its rows and rules.  Kinds (in src/worker.c's
-- table), the function each runs, and what it returns:
--
--   audit           {event, user_id, tenant_id, session_id, db_role, detail}
--                   one audit_log row (admin_begin's admin_bypass, from
--                   AuditWriteDurable in src/audit.c): authctx._audit_record,
--                   20_audit.sql; {}
--   login_attempt   {email, password, user_id, member, method, db_role,
--                    threshold, base_delay, max_delay}
--                   decide a password attempt (authctx._login_attempt,
--                   50_session.sql): account lock, lockout state, password
--                   verified against the latest committed hash, failure
--                   counted and audited or streak cleared; {user_id} when
--                   the login may go on, else {failures, locked_until}
--   webauthn_attempt {credential_id, authenticator_data, client_data_json,
--                    signature (hex), rp_id, origin, login, user_id, member,
--                    method, db_role}
--                   decide a passkey assertion (authctx._webauthn_attempt,
--                   60_webauthn.sql): challenge spent, checks, counter
--                   recorded, or a suspected clone marked and the failure
--                   audited; {user_id} on success, else {}
--   login_failed    {user_id, reason, method, count, threshold, base_delay,
--                    max_delay, db_role}
--                   count the failure toward the lockout (when count is
--                   true and the user exists: the back-off) and audit
--                   login_failed (authctx._login_failure, 40_identity.sql);
--                   {failures, locked_until} as far as known
--   refresh_reuse   {family_id, user_id, tenant_id, session_id, token_id,
--                    db_role}
--                   revoke every session and refresh token of the family and
--                   audit refresh_reuse (authctx._refresh_reuse,
--                   50_session.sql); {sessions_revoked}
--   webauthn_failed {challenge, credential_id, user_id, reason, clone,
--                    stored_count, presented_count, login, method, db_role}
--                   spend the challenge, mark a suspected clone, audit
--                   (authctx._webauthn_failure, 60_webauthn.sql;
--                   login_failed for a login: then its result); {}
--   seen            {entries: [{k: "s"|"k", id, t}]}, t in microseconds since
--                   the Unix epoch: last_seen_at / last_used_at, only ever
--                   moved forward (authctx._note_seen, 50_session.sql, for
--                   the last-seen writer, src/seen.c); {}
--
-- src/worker.c has one more kind, cleanup (src/cleanup.c's runs of
-- authctx.cleanup()), which the C side alone asks for and which does not
-- go through _autonomous_apply.
--
-- The payload is built by the extension's own functions: the caller's
-- settings (lockout) and identity (db_role) travel in it, because the
-- worker is another backend and sees neither.  A login_attempt payload
-- holds a password: the worker wipes its copy in shared memory as soon as
-- it has read it, and neither it nor the caller ever prints a payload
-- (src/worker.c).
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx._autonomous(kind text, payload jsonb) RETURNS boolean
  AS 'MODULE_PATHNAME', 'authctx_autonomous'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._autonomous(text, jsonb) IS
  'internal: apply a record in a background worker''s own transaction and wait; true, or 55000 if it could not be written';
REVOKE ALL ON FUNCTION authctx._autonomous(text, jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._autonomous_call(kind text, payload jsonb) RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_autonomous_call'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._autonomous_call(text, jsonb) IS
  'internal: apply a record in a background worker''s own transaction and wait; its result, or 55000 if it could not be written';
REVOKE ALL ON FUNCTION authctx._autonomous_call(text, jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- a dispatcher only: every rule lives with the module that owns it
  CASE kind
    WHEN 'audit' THEN
      RETURN authctx._audit_record(payload);
    WHEN 'login_attempt' THEN
      RETURN authctx._login_attempt(payload);
    WHEN 'webauthn_attempt' THEN
      RETURN authctx._webauthn_attempt(payload);
    WHEN 'login_failed' THEN
      RETURN authctx._login_failure((payload ->> 'user_id')::uuid, payload ->> 'reason',
                                    (payload ->> 'count')::boolean, payload);
    WHEN 'webauthn_failed' THEN
      RETURN authctx._webauthn_failure(payload);
    WHEN 'refresh_reuse' THEN
      RETURN authctx._refresh_reuse(payload);
    WHEN 'seen' THEN
      RETURN authctx._note_seen(payload);
    ELSE
      RAISE EXCEPTION 'unknown autonomous record kind' USING ERRCODE = '22023';
  END CASE;
END
$$;
COMMENT ON FUNCTION authctx._autonomous_apply(text, jsonb) IS
  'internal: what the autonomous worker runs in its own transaction (audit, login_attempt, webauthn_attempt, login_failed, webauthn_failed, refresh_reuse, seen); returns what the record did';
REVOKE ALL ON FUNCTION authctx._autonomous_apply(text, jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._seen_stats(
    OUT queued bigint, OUT pending bigint, OUT batches bigint,
    OUT written bigint, OUT failed bigint, OUT overflowed bigint)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_seen_stats'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._seen_stats() IS
  'internal: cluster-wide counters of the shared last-seen queue (all zero without shared_preload_libraries)';
REVOKE ALL ON FUNCTION authctx._seen_stats() FROM PUBLIC;
