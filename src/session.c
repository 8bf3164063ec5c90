/*-------------------------------------------------------------------------
 *
 * session.c
 *		Session settings and the request-path lookup of sessions and keys.
 *
 * Sessions, refresh tokens and API keys are managed by SQL functions
 * (src/sql/50_session.sql).  This file holds what the hot path needs: the
 * lifetime settings and SessionLookup(), which finds a session or API key by
 * its public id and checks it (see request.c for the order of checks).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authctx.h"

/* Lifetime settings, in seconds (milliseconds for the grace). */
int			authctx_session_lifetime = 86400;
int			authctx_session_idle_timeout = 3600;
int			authctx_refresh_lifetime = 30 * 86400;
int			authctx_refresh_reuse_grace = 0;
int			authctx_last_seen_interval = 60;
int			authctx_lockout_threshold = 5;
int			authctx_lockout_base_delay = 30;
int			authctx_lockout_max_delay = 900;

/* Define the session settings. */
void
SessionInit(void)
{
	DefineCustomIntVariable("authctx.session_lifetime",
							"Absolute lifetime of a session.",
							NULL,
							&authctx_session_lifetime,
							86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.session_idle_timeout",
							"A session unused for this long expires; 0 disables the idle timeout.",
							NULL,
							&authctx_session_idle_timeout,
							3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.refresh_lifetime",
							"Lifetime of a refresh token.",
							NULL,
							&authctx_refresh_lifetime,
							30 * 86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.refresh_reuse_grace",
							"Window in which a spent refresh token may be presented again without revoking its family.",
							"0 (the default) means a refresh token works exactly once.",
							&authctx_refresh_reuse_grace,
							0, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.last_seen_interval",
							"Granularity of last-seen and last-used times; they are written off the request path at most this often per session.",
							NULL,
							&authctx_last_seen_interval,
							60, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_threshold",
							"Consecutive failed logins after which an account is locked for a while.",
							NULL,
							&authctx_lockout_threshold,
							5, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_base_delay",
							"Lockout after the threshold is reached; doubles with each further failure.",
							NULL,
							&authctx_lockout_base_delay,
							30, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_max_delay",
							"Longest lockout, however many failures.",
							NULL,
							&authctx_lockout_max_delay,
							900, 1, 86400 * 7,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * Request-path lookup.
 *
 * SessionLookup() reads one session or API key by its public id with a
 * saved SPI plan, as the bootstrap superuser (application roles have no
 * privilege on the tables), under the latest snapshot: a revocation that
 * committed before this call is seen even inside a REPEATABLE READ
 * transaction that started earlier.  It only reads.
 * ---------------------------------------------------------------------
 */

static SPIPlanPtr authctx_session_plan = NULL;
static SPIPlanPtr authctx_key_plan = NULL;

static const char *const session_lookup_sql =
"SELECT s.user_id, s.tenant_id, s.verifier, s.expires_at, s.last_seen_at,"
"       s.revoked_at IS NOT NULL, u.disabled_at IS NOT NULL, NULL::text, m.role"
"  FROM authctx.sessions s"
"  JOIN authctx.users u ON u.id OPERATOR(pg_catalog.=) s.user_id"
"  LEFT JOIN authctx.memberships m"
"    ON m.tenant_id OPERATOR(pg_catalog.=) s.tenant_id"
"   AND m.user_id OPERATOR(pg_catalog.=) s.user_id"
" WHERE s.id OPERATOR(pg_catalog.=) $1";

static const char *const key_lookup_sql =
"SELECT k.user_id, k.tenant_id, k.verifier, k.expires_at, k.last_used_at,"
"       k.revoked_at IS NOT NULL, u.disabled_at IS NOT NULL,"
"       pg_catalog.array_to_string(k.scopes, E'\\n'), m.role"
"  FROM authctx.api_keys k"
"  JOIN authctx.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
"  LEFT JOIN authctx.memberships m"
"    ON m.tenant_id OPERATOR(pg_catalog.=) k.tenant_id"
"   AND m.user_id OPERATOR(pg_catalog.=) k.user_id"
" WHERE k.id OPERATOR(pg_catalog.=) $1";

/*
 * SPI is connected only when a lookup misses the cache: a cache hit runs no
 * query at all.  request.c calls SessionSpiFinish() on success and
 * SessionSpiForget() when an error unwinds (SPI cleans up after itself at
 * (sub)transaction abort).
 */
static bool authctx_spi_connected = false;

void
SessionSpiConnect(void)
{
	if (!authctx_spi_connected)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		authctx_spi_connected = true;
	}
}

void
SessionSpiFinish(void)
{
	if (authctx_spi_connected)
	{
		authctx_spi_connected = false;
		SPI_finish();
	}
}

void
SessionSpiForget(void)
{
	authctx_spi_connected = false;
}

/* Prepare (once per backend) the lookup plan for a kind. */
static SPIPlanPtr
SessionPlan(char kind)
{
	SPIPlanPtr *slot = (kind == TOKEN_API_KEY) ? &authctx_key_plan : &authctx_session_plan;

	if (*slot == NULL)
	{
		Oid			argtypes[1] = {UUIDOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare(kind == TOKEN_API_KEY ? key_lookup_sql : session_lookup_sql,
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for session lookup: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/* Timestamp column, with NULL meaning "never" (DT_NOEND). */
static TimestampTz
SessionGetTimestamp(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

/*
 * Find a session (kind 's') or API key (kind 'k') by id.  Returns false
 * when there is no such row.  The caller must run as a role that can read
 * the tables; SPI is connected here on a cache miss.  The record also carries the
 * user's role in the record's own tenant (member_known).
 *
 * The shared-memory cache (cache.c) answers first when it can; on a miss
 * the stamp is read before the snapshot of the table lookup is taken, and
 * the record is offered back to the cache.
 */
bool
SessionLookup(char kind, const pg_uuid_t *id, SessionRecord *rec)
{
	Datum		args[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			ret;
	uint64		stamp;

	memset(rec, 0, sizeof(*rec));
	if (CacheSessionGet(kind, id, rec))
		return true;
	stamp = CacheStamp();		/* before GetLatestSnapshot() */

	SessionSpiConnect();
	args[0] = UUIDPGetDatum((pg_uuid_t *) id);
	ret = SPI_execute_snapshot(SessionPlan(kind), args, NULL,
							   GetLatestSnapshot(), InvalidSnapshot,
							   true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "session lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		CacheSessionPut(kind, id, NULL, stamp);
		return false;
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	rec->kind = kind;
	memcpy(&rec->id, id, sizeof(pg_uuid_t));
	memcpy(&rec->user_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)),
		   sizeof(pg_uuid_t));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	rec->has_tenant = !isnull;
	if (!isnull)
		memcpy(&rec->tenant_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	d = SPI_getbinval(tup, desc, 3, &isnull);
	if (!isnull && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == AUTHCTX_TOKEN_HASH_LEN)
	{
		bytea	   *b = DatumGetByteaPP(d);

		memcpy(rec->verifier, VARDATA_ANY(b), AUTHCTX_TOKEN_HASH_LEN);
		rec->has_verifier = true;
	}
	rec->expires_at = SessionGetTimestamp(tup, desc, 4);
	rec->last_seen_at = SessionGetTimestamp(tup, desc, 5);
	rec->revoked = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
	rec->user_disabled = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	d = SPI_getbinval(tup, desc, 8, &isnull);
	if (!isnull)
		strlcpy(rec->scopes, TextDatumGetCString(d), sizeof(rec->scopes));
	d = SPI_getbinval(tup, desc, 9, &isnull);
	rec->member_known = true;
	rec->is_member = rec->has_tenant && !isnull;
	if (rec->is_member)
		strlcpy(rec->role, TextDatumGetCString(d), sizeof(rec->role));

	CacheSessionPut(kind, id, rec, stamp);
	return true;
}
