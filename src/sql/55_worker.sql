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
-- error.  Kinds, and what _autonomous_apply returns for them:
--
--   audit           {event, user_id, tenant_id, session_id, db_role, detail}
--                   one audit_log row (admin_begin's admin_bypass); {}
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
--                   true and the user exists) and audit login_failed
--                   (authctx._login_failure); {failures, locked_until} as
--                   far as known
--   webauthn_failed {challenge, credential_id, user_id, reason, clone,
--                    stored_count, presented_count, login, db_role, ...}
--                   spend the challenge, mark a suspected clone, audit
--                   (authctx._webauthn_failure; login_failed for a login:
--                   then its result); {}
--   refresh_reuse   {family_id, user_id, tenant_id, session_id, token_id,
--                    db_role}
--                   revoke every session and refresh token of the family and
--                   audit refresh_reuse; {sessions_revoked}
--   seen            {entries: [{k: "s"|"k", id, t}]}, t in microseconds since
--                   the Unix epoch: last_seen_at / last_used_at, only ever
--                   moved forward; {}
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
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_role      name := coalesce(payload ->> 'db_role', session_user::text);
  v_family    uuid;
  v_sessions  integer;
  v_kind      text;
  v_ids       uuid[];
  v_ats       timestamptz[];
  v_result    jsonb := '{}';
BEGIN
  IF kind = 'audit' THEN
    IF coalesce(payload ->> 'event', '') = '' THEN
      RAISE EXCEPTION 'audit record without an event' USING ERRCODE = '22023';
    END IF;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now,
            payload ->> 'event',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            coalesce(payload -> 'detail', '{}'::jsonb));

  ELSIF kind = 'login_attempt' THEN
    v_result := authctx._login_attempt(payload);

  ELSIF kind = 'webauthn_attempt' THEN
    v_result := authctx._webauthn_attempt(payload);

  ELSIF kind = 'login_failed' THEN
    v_result := authctx._login_failure((payload ->> 'user_id')::uuid, payload ->> 'reason',
                                       (payload ->> 'count')::boolean, payload);

  ELSIF kind = 'webauthn_failed' THEN
    v_result := authctx._webauthn_failure(payload);

  ELSIF kind = 'refresh_reuse' THEN
    v_family := (payload ->> 'family_id')::uuid;
    IF v_family IS NULL THEN
      RAISE EXCEPTION 'refresh_reuse record without a family' USING ERRCODE = '22023';
    END IF;
    SELECT f.sessions INTO v_sessions FROM authctx._revoke_family(v_family, v_now) f;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now, 'refresh_reuse',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            jsonb_build_object(
              'family_id', v_family,
              'refresh_token_id', payload ->> 'token_id',
              'sessions_revoked', v_sessions));
    v_result := jsonb_build_object('sessions_revoked', v_sessions);

  ELSIF kind = 'seen' THEN
    -- Last-seen (sessions) and last-used (API keys) times, moved forward
    -- only.  The payload is parsed once per kind.  The write never waits for
    -- a row lock: a row that anyone else holds (a revocation, cleanup,
    -- another batch) is skipped and keeps its time, which is a hint at most
    -- an interval behind, so this transaction can take part in no deadlock.
    -- Each row is locked through its primary key (the locking subquery in
    -- LATERAL keeps the plan a nested loop of index probes; a join would
    -- let the planner hash the whole table) and then updated by its ctid.
    FOREACH v_kind IN ARRAY ARRAY['s', 'k'] LOOP
      SELECT coalesce(array_agg(n.id ORDER BY n.id), '{}'),
             coalesce(array_agg(n.at ORDER BY n.id), '{}')
        INTO v_ids, v_ats
        FROM (SELECT (e ->> 'id')::uuid AS id,
                     max(to_timestamp((e ->> 't')::numeric / 1000000)) AS at
                FROM jsonb_array_elements(payload -> 'entries') e
               WHERE e ->> 'k' = v_kind
               GROUP BY 1) n;
      CONTINUE WHEN cardinality(v_ids) = 0;
      IF v_kind = 's' THEN
        WITH l AS (
          SELECT x.tid, m.at
            FROM unnest(v_ids, v_ats) m(id, at)
            CROSS JOIN LATERAL (
              SELECT s.ctid AS tid
                FROM authctx.sessions s
               WHERE s.id = m.id AND s.last_seen_at < m.at
                 FOR NO KEY UPDATE SKIP LOCKED) x)
        UPDATE authctx.sessions s
           SET last_seen_at = l.at
          FROM l
         WHERE s.ctid = l.tid;
      ELSE
        WITH l AS (
          SELECT x.tid, m.at
            FROM unnest(v_ids, v_ats) m(id, at)
            CROSS JOIN LATERAL (
              SELECT k.ctid AS tid
                FROM authctx.api_keys k
               WHERE k.id = m.id AND (k.last_used_at IS NULL OR k.last_used_at < m.at)
                 FOR NO KEY UPDATE SKIP LOCKED) x)
        UPDATE authctx.api_keys k
           SET last_used_at = l.at
          FROM l
         WHERE k.ctid = l.tid;
      END IF;
    END LOOP;

  ELSE
    RAISE EXCEPTION 'unknown autonomous record kind' USING ERRCODE = '22023';
  END IF;
  RETURN v_result;
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
