-- ---------------------------------------------------------------------------
-- 65 cache: invalidation of the shared-memory session cache (src/cache.c).
--
-- The cache exists only with shared_preload_libraries = 'authctx' and
-- authctx.cache_size > 0; otherwise these triggers do nothing.  Every change
-- that can alter what auth_begin decides pends a cache slot, and the slot is
-- bumped when (and only if) the transaction commits:
--   sessions, api_keys      ('token', kind): the slot of the row's own token
--                           id (old and new row), so that revoking one
--                           session leaves the user's other cached sessions
--                           alone; kind is TOKEN_SESSION 's' or TOKEN_API_KEY
--                           'k' (src/authctx.h), as in the cache key.  Once
--                           a transaction has pended CACHE_PENDING_MAX / 2
--                           slots, the row's user slot (column user_id)
--                           instead, so that a bulk revocation stays short
--                           of flushing the whole database;
--   users, memberships      ('user', column): the slot of the user named by
--                           column, old and new row;
--   tenants                 ('tenant'): the database's tenant slot;
--   TRUNCATE of any of them ('all'): the database's epoch slot.
-- The columns watched are those SessionLookup() and TenantForRequest() read;
-- last_seen_at / last_used_at are not (worker.c writes them in the
-- background, and the cache keeps its own copy).
--
-- The triggers are ENABLE ALWAYS, so that logical replication apply and
-- session_replication_role = replica still invalidate.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx._cache_invalidate() RETURNS trigger
  AS 'MODULE_PATHNAME', 'authctx_cache_invalidate'
  LANGUAGE C;
COMMENT ON FUNCTION authctx._cache_invalidate() IS
  'internal trigger: invalidate the session cache for the sessions, keys, users or tenants a change touches, at commit';

CREATE FUNCTION authctx._cache_flush() RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_cache_flush'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._cache_flush() IS
  'internal: when this transaction commits, drop every session cache entry of this database';

CREATE FUNCTION authctx._cache_stats(
    OUT hits bigint, OUT misses bigint, OUT entries bigint,
    OUT member_hits bigint, OUT member_misses bigint, OUT member_entries bigint,
    OUT evictions bigint, OUT capacity bigint)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_cache_stats'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._cache_stats() IS
  'internal: cluster-wide session cache counters (all zero without shared_preload_libraries)';

REVOKE ALL ON FUNCTION authctx._cache_invalidate(), authctx._cache_flush(),
  authctx._cache_stats() FROM PUBLIC;

-- sessions ------------------------------------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.sessions FOR EACH ROW
  WHEN ((OLD.id, OLD.user_id, OLD.tenant_id, OLD.verifier, OLD.expires_at, OLD.revoked_at,
         OLD.amr)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.tenant_id, NEW.verifier, NEW.expires_at, NEW.revoked_at,
         NEW.amr))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 's');
-- A revoked row was never cached as valid, nor is an expired one served
-- (expiry is checked on every hit); the margin covers a wall clock that steps
-- back a little.
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.sessions FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL
        AND OLD.expires_at OPERATOR(pg_catalog.>)
            (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '5 minutes'))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 's');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.sessions FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- API keys ------------------------------------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.api_keys FOR EACH ROW
  WHEN ((OLD.id, OLD.user_id, OLD.tenant_id, OLD.verifier, OLD.expires_at, OLD.revoked_at,
         OLD.scopes)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.tenant_id, NEW.verifier, NEW.expires_at, NEW.revoked_at,
         NEW.scopes))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 'k');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.api_keys FOR EACH ROW
  WHEN (OLD.revoked_at IS NULL
        AND (OLD.expires_at IS NULL
             OR OLD.expires_at OPERATOR(pg_catalog.>)
                (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '5 minutes')))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 'k');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.api_keys FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- users: disable / enable, a user-wide revocation stamp, deletion ----------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.users FOR EACH ROW
  WHEN ((OLD.id, OLD.disabled_at, OLD.sessions_revoked_before, OLD.sessions_revoked_except)
        IS DISTINCT FROM
        (NEW.id, NEW.disabled_at, NEW.sessions_revoked_before, NEW.sessions_revoked_except))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.users FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.users FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- memberships: added (a cached "not a member" of its own tenant), removed,
-- role changed ----------------------------------------------------------------
CREATE TRIGGER cache_invalidate_insert
  AFTER INSERT ON authctx.memberships FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.memberships FOR EACH ROW
  WHEN ((OLD.tenant_id, OLD.user_id, OLD.role) IS DISTINCT FROM (NEW.tenant_id, NEW.user_id, NEW.role))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.memberships FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.memberships FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

-- tenants: a slug or id that changes or goes away ---------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.tenants FOR EACH ROW
  WHEN ((OLD.id, OLD.slug) IS DISTINCT FROM (NEW.id, NEW.slug))
  EXECUTE FUNCTION authctx._cache_invalidate('tenant');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.tenants FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('tenant');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.tenants FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');

ALTER TABLE authctx.sessions ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.api_keys ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.users ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.memberships ENABLE ALWAYS TRIGGER cache_invalidate_insert,
  ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;
ALTER TABLE authctx.tenants ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;

-- Nothing cached from an earlier installation in this database survives
-- this one (DROP EXTENSION leaves shared memory as it was).
SELECT authctx._cache_flush();
