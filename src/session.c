/*-------------------------------------------------------------------------
 *
 * session.c
 *		Session settings and the request-path lookup of sessions and keys.
 *
 * Sessions, refresh tokens and API keys are managed by SQL functions
 * (src/sql/50_session.sql).  This file holds what the hot path needs: the
 * lifetime settings, SessionValidate(), which finds a session or API key by
 * its public id and checks it, and SessionNoteUse(), which records its use.
 *
 * The liveness rule is written down once, in the header of
 * src/sql/50_session.sql, and has one home in C: SessionLookup() reads its
 * row and user parts (revoked_at, the user's disabled_at and the user's
 * revocation stamp: SessionRevokedByUser() is the C twin of
 * authctx._revoked_by_user()), and SessionIsLive() judges the record,
 * clock parts included (expiry, idle timeout: the C twin of
 * authctx._session_live()).  request.c (through SessionValidate) and the
 * cache (deciding what it may keep) both ask SessionIsLive().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
							"Granularity of API keys' last-used times, and of sessions' last-seen times when the idle timeout is off; written off the request path at most this often per key or session.",
							"With authctx.session_idle_timeout on, a session's last-seen time is written every tenth of the idle timeout instead.",
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
 * SessionLookup() finds one session or API key by its public id, with the
 * user's status and the user's role in the record's own tenant.  The
 * shared-memory cache (cache.c) answers first when it can; on a miss the
 * rows are read by primary key with direct index scans (fetch.c), under the
 * latest snapshot: a revocation that committed before this call is seen
 * even inside a REPEATABLE READ transaction that started earlier.  The
 * cache stamp is read before that snapshot is taken, and the record is
 * offered back to the cache.  Nothing is written.
 * ---------------------------------------------------------------------
 */

/* the row's own id comes last: see SessionLookup */
static const char *const session_cols[] = {
	"user_id", "tenant_id", "verifier", "expires_at", "last_seen_at", "revoked_at",
	"created_at", "family_id", "amr", "id"
};
static const char *const key_cols[] = {
	"user_id", "tenant_id", "verifier", "expires_at", "last_used_at", "revoked_at", "scopes", "id"
};
static const char *const user_cols[] = {
	"disabled_at", "sessions_revoked_before", "sessions_revoked_except"
};

/*
 * Is a session of this user revoked by the user's revocation stamp?  It is
 * when it was issued at or before users.sessions_revoked_before and is not
 * of the one login family the stamp spares (sessions_revoked_except).  The
 * C twin of authctx._revoked_by_user() (src/sql/50_session.sql).
 */
static bool
SessionRevokedByUser(TimestampTz created_at, const pg_uuid_t *family_id,
					 const Datum *uv, const bool *un)
{
	if (un[1] || created_at > DatumGetTimestampTz(uv[1]))
		return false;
	return un[2] || memcmp(DatumGetUUIDP(uv[2]), family_id, sizeof(pg_uuid_t)) != 0;
}

/* ---------------------------------------------------------------------
 * API key scopes.
 *
 * One rule, checked by create_api_key (through authctx._check_scopes) and
 * again by auth_begin on what it reads: a scope is 1 to SCOPE_MAX_LEN
 * characters from A-Z a-z 0-9 _ . : / * + -, a key has at most
 * SCOPES_MAX_COUNT of them, and joined with newlines (the form the context
 * and has_scope use) they fit in SessionRecord.scopes.  So a scope can
 * never hold the separator, and the joined list is never cut: a stored
 * list that breaks the rule (rows written by 0.1.0, or by hand) makes
 * auth_begin refuse the key.
 * ---------------------------------------------------------------------
 */
#define SCOPE_MAX_LEN		128
#define SCOPES_MAX_COUNT	64
#define SCOPES_MAX_BYTES	(sizeof(((SessionRecord *) 0)->scopes) - 1)

typedef enum ScopesProblem
{
	SCOPES_OK,
	SCOPES_NOT_FLAT,			/* a multidimensional array */
	SCOPES_TOO_MANY,
	SCOPES_EMPTY,				/* a NULL or empty scope */
	SCOPES_TOO_LONG,
	SCOPES_BAD_CHAR,
	SCOPES_TOO_BIG				/* joined, they do not fit */
} ScopesProblem;

PG_FUNCTION_INFO_V1(authctx_check_scopes);

/* Is c one of the characters a scope may hold? */
static inline bool
ScopeChar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == ':' || c == '/' || c == '*' ||
		c == '+' || c == '-';
}

/*
 * Check an API key's scopes and join them with newlines into out (outlen
 * bytes, at least SCOPES_MAX_BYTES + 1); *which is the 1-based position of
 * the offending scope, 0 when the problem is the list's.
 */
static ScopesProblem
ScopesJoin(ArrayType *arr, char *out, size_t outlen, int *which)
{
	Datum	   *elems;
	bool	   *enulls;
	int			nelems;
	size_t		used = 0;

	*which = 0;
	out[0] = '\0';
	if (ARR_NDIM(arr) > 1)
		return SCOPES_NOT_FLAT;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &nelems);
	if (nelems > SCOPES_MAX_COUNT)
		return SCOPES_TOO_MANY;
	for (int i = 0; i < nelems; i++)
	{
		text	   *t;
		const char *p;
		size_t		len;

		*which = i + 1;
		if (enulls[i])
			return SCOPES_EMPTY;
		t = DatumGetTextPP(elems[i]);
		p = VARDATA_ANY(t);
		len = VARSIZE_ANY_EXHDR(t);
		if (len == 0)
			return SCOPES_EMPTY;
		if (len > SCOPE_MAX_LEN)
			return SCOPES_TOO_LONG;
		for (size_t j = 0; j < len; j++)
			if (!ScopeChar((unsigned char) p[j]))
				return SCOPES_BAD_CHAR;
		if (used + (used > 0 ? 1 : 0) + len > Min(outlen - 1, SCOPES_MAX_BYTES))
		{
			*which = 0;
			out[0] = '\0';
			return SCOPES_TOO_BIG;
		}
		if (used > 0)
			out[used++] = '\n';
		memcpy(out + used, p, len);
		used += len;
		out[used] = '\0';
	}
	*which = 0;
	return SCOPES_OK;
}

/*
 * authctx._check_scopes(scopes text[]): raise 22023 unless create_api_key
 * may store these scopes.
 */
Datum
authctx_check_scopes(PG_FUNCTION_ARGS)
{
	char		joined[SCOPES_MAX_BYTES + 1];
	int			which;
	const char *detail = "A scope is 1 to 128 characters from A-Z, a-z, 0-9 and _ . : / * + -; "
		"a key has at most 64 scopes, of at most 1023 bytes together (counting one separator between two scopes).";

	switch (ScopesJoin(PG_GETARG_ARRAYTYPE_P(0), joined, sizeof(joined), &which))
	{
		case SCOPES_OK:
			break;
		case SCOPES_NOT_FLAT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scopes must be a one-dimensional array")));
			break;
		case SCOPES_TOO_MANY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an API key has at most %d scopes", SCOPES_MAX_COUNT),
					 errdetail_internal("%s", detail)));
			break;
		case SCOPES_EMPTY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scopes must not be null or empty")));
			break;
		case SCOPES_TOO_LONG:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scope %d is longer than %d characters", which, SCOPE_MAX_LEN),
					 errdetail_internal("%s", detail)));
			break;
		case SCOPES_BAD_CHAR:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scope %d contains a character that is not allowed in a scope", which),
					 errdetail_internal("%s", detail)));
			break;
		case SCOPES_TOO_BIG:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the scopes of an API key take more than %d bytes together",
							(int) SCOPES_MAX_BYTES),
					 errdetail_internal("%s", detail)));
			break;
	}
	PG_RETURN_VOID();
}

/* API key scopes, checked and joined into out; false if they break the rule. */
static bool
SessionScopes(Datum arr, char *out, size_t outlen)
{
	int			which;

	if (ScopesJoin(DatumGetArrayTypeP(arr), out, outlen, &which) == SCOPES_OK)
		return true;
	out[0] = '\0';
	return false;
}

/*
 * Find a session (kind 's') or API key (kind 'k') by id, in the cache
 * unless tables_only.  Returns false when there is no such row.
 *
 * An id that is not found costs the same reads as one that is.  The
 * primary key is probed for the first row at or after the id: that is the
 * row when the id exists; otherwise it is the row that follows, whose user
 * and membership are then read all the same and the answers thrown away.
 * One probe, one heap row, one user, one membership either way, so "no such
 * id" and "wrong secret" take the same time (request.c completes this for
 * cache hits).
 */
bool
SessionLookup(char kind, const pg_uuid_t *id, bool tables_only, SessionRecord *rec)
{
	static const pg_uuid_t nobody = {{0}};
	Datum		key = UUIDPGetDatum((pg_uuid_t *) id);
	Oid			eq = F_UUID_EQ;
	Datum		v[10];
	bool		n[10];
	Datum		uv[3];
	bool		un[3];
	uint64		stamp;
	Snapshot	snap;
	bool		found;
	int			idcol;

	memset(rec, 0, sizeof(*rec));
	if (!tables_only && CacheSessionGet(kind, id, rec))
	{
		rec->from_cache = true;
		return true;
	}
	stamp = CacheStamp();		/* before GetLatestSnapshot() */

	snap = RegisterSnapshot(GetLatestSnapshot());
	if (kind == TOKEN_API_KEY)
	{
		idcol = lengthof(key_cols) - 1;
		found = FetchRowAtLeast("api_keys", "api_keys_pkey", key, F_UUID_GE, snap,
								lengthof(key_cols), key_cols, v, n);
	}
	else
	{
		idcol = lengthof(session_cols) - 1;
		found = FetchRowAtLeast("sessions", "sessions_pkey", key, F_UUID_GE, snap,
								lengthof(session_cols), session_cols, v, n);
	}
	if (!found || n[idcol] ||
		memcmp(DatumGetUUIDP(v[idcol]), id, sizeof(pg_uuid_t)) != 0)
	{
		/* no such id: the reads a found one costs, answers not used */
		pg_uuid_t	other_user = nobody;
		pg_uuid_t	other_tenant = nobody;
		char		role[NAMEDATALEN];

		if (found)
		{
			other_user = *DatumGetUUIDP(v[0]);
			if (!n[1])
				other_tenant = *DatumGetUUIDP(v[1]);
		}
		key = UUIDPGetDatum(&other_user);
		(void) FetchRow("users", "users_pkey", 1, &key, &eq, snap,
						lengthof(user_cols), user_cols, uv, un);
		(void) IdentityMemberRole(&other_tenant, &other_user, snap, role);
		UnregisterSnapshot(snap);
		CacheSessionPut(kind, id, NULL, stamp);
		return false;
	}

	rec->kind = kind;
	rec->id = *id;
	rec->user_id = *DatumGetUUIDP(v[0]);
	rec->has_tenant = !n[1];
	if (!n[1])
		rec->tenant_id = *DatumGetUUIDP(v[1]);
	if (!n[2] && VARSIZE_ANY_EXHDR(DatumGetPointer(v[2])) == AUTHCTX_TOKEN_HASH_LEN)
	{
		memcpy(rec->verifier, VARDATA_ANY(DatumGetByteaPP(v[2])), AUTHCTX_TOKEN_HASH_LEN);
		rec->has_verifier = true;
	}
	rec->expires_at = n[3] ? DT_NOEND : DatumGetTimestampTz(v[3]);
	rec->last_seen_at = n[4] ? DT_NOEND : DatumGetTimestampTz(v[4]);
	/* a use this backend noted that the writer has not written yet */
	rec->last_seen_at = SeenLater(rec->last_seen_at, WorkerSeenPending(kind, id));
	rec->revoked = !n[5];
	if (kind == TOKEN_API_KEY && !n[6])
		rec->scopes_bad = !SessionScopes(v[6], rec->scopes, sizeof(rec->scopes));
	/* a session's amr, held where a key's scopes are; the same rule */
	if (kind == TOKEN_SESSION && !n[8])
		rec->scopes_bad = !SessionScopes(v[8], rec->scopes, sizeof(rec->scopes));

	/* a session row without its user cannot exist (foreign key); be safe */
	key = UUIDPGetDatum(&rec->user_id);
	rec->user_disabled = !FetchRow("users", "users_pkey", 1, &key, &eq, snap,
								   lengthof(user_cols), user_cols, uv, un) || !un[0];

	/* sessions issued before a user-wide revocation (not API keys) */
	if (kind == TOKEN_SESSION && !rec->user_disabled && !rec->revoked &&
		(n[6] || n[7] ||
		 SessionRevokedByUser(DatumGetTimestampTz(v[6]), DatumGetUUIDP(v[7]), uv, un)))
		rec->revoked = true;

	rec->member_known = true;
	rec->is_member = rec->has_tenant &&
		IdentityMemberRole(&rec->tenant_id, &rec->user_id, snap, rec->role);
	UnregisterSnapshot(snap);

	CacheSessionPut(kind, id, rec, stamp);
	return true;
}

/* ---------------------------------------------------------------------
 * The liveness rule, and recording use.
 * ---------------------------------------------------------------------
 */

/*
 * How often a use of this record is recorded, in microseconds: a session's
 * last-seen time moves when it is this much older than the use.  With an
 * idle timeout T it is T / AUTHCTX_SEEN_FRACTION (the idle rule needs no
 * more); with the idle timeout off, and for API keys (which have none), it
 * is authctx.last_seen_interval, which only list_sessions and
 * list_api_keys show.  The SQL twin of the idle part is
 * authctx._session_live() in src/sql/50_session.sql.
 */
int64
SessionSeenInterval(char kind)
{
	if (kind == TOKEN_SESSION && authctx_session_idle_timeout > 0)
		return (int64) authctx_session_idle_timeout * USECS_PER_SEC / AUTHCTX_SEEN_FRACTION;
	return (int64) authctx_last_seen_interval * USECS_PER_SEC;
}

/*
 * Is the record live at now (the wall clock)?  The one C statement of the
 * liveness rule: a verifier to compare with, not revoked (by its row or by
 * its user's stamp, as SessionLookup read it), its user not disabled, API
 * key scopes that validate, not expired, and a session not idle.
 *
 * Idle: the recorded last-seen time moves only when a use finds it at
 * least R = SessionSeenInterval() old, so it lags the last use by less
 * than R; a session is idle when its recorded time is T + R old or more
 * (T = authctx.session_idle_timeout).  So a session used within T is never
 * refused, and one unused for T + R is always refused; between the two it
 * depends on where the last recorded use fell.  The verifier itself is
 * compared by SessionValidate; the cache asks this before it keeps a record.
 */
bool
SessionIsLive(const SessionRecord *rec, TimestampTz now)
{
	if (!rec->has_verifier || rec->revoked || rec->user_disabled ||
		rec->scopes_bad || rec->expires_at <= now)
		return false;
	if (rec->kind == TOKEN_SESSION && authctx_session_idle_timeout > 0 &&
		rec->last_seen_at != DT_NOEND &&
		rec->last_seen_at + (int64) authctx_session_idle_timeout * USECS_PER_SEC +
		SessionSeenInterval(TOKEN_SESSION) <= now)
		return false;
	return true;
}

/* Does the verifier match the record's (a constant-time compare, always)? */
static bool
SessionVerifierMatches(const unsigned char *verifier, bool found,
					   const SessionRecord *rec)
{
	static const unsigned char zero_verifier[AUTHCTX_TOKEN_HASH_LEN] = {0};

	return CryptoEqual(verifier,
					   found && rec->has_verifier ? rec->verifier : zero_verifier,
					   AUTHCTX_TOKEN_HASH_LEN);
}

/*
 * Find the session or API key of a parsed token and check it: the secret
 * against the stored verifier, then SessionIsLive() by the wall clock,
 * which is returned in *now.  True when the token may be used; *rec is
 * filled either way (zeroed when there is no such id).  The cache answers
 * first; a miss reads the tables by primary key (no SPI, no privilege
 * check: application roles cannot read the tables themselves).
 */
bool
SessionValidate(const AuthctxToken *tok, SessionRecord *rec, TimestampTz *now)
{
	unsigned char verifier[AUTHCTX_TOKEN_HASH_LEN];
	bool		found;
	bool		match;

	TokenVerifier(tok, verifier);

	/* same work whether or not the id exists */
	found = SessionLookup(tok->kind, (const pg_uuid_t *) tok->id, false, rec);
	match = SessionVerifierMatches(verifier, found, rec);

	/*
	 * A wrong secret for a cached id is checked again against the tables.
	 * Not for correctness (the cache never answers "valid" when the tables
	 * would not): so that a wrong secret costs what an unknown id costs,
	 * which always misses the cache and reads the tables, and the time of a
	 * rejection does not tell whether the id exists.
	 */
	if (found && !match && rec->from_cache)
	{
		found = SessionLookup(tok->kind, (const pg_uuid_t *) tok->id, true, rec);
		match = SessionVerifierMatches(verifier, found, rec);
	}
	CryptoZero(verifier, sizeof(verifier));

	*now = GetCurrentTimestamp();	/* the wall clock, not now() */
	return found && match && SessionIsLive(rec, *now);
}

/*
 * Record that a validated session or API key was used at now.  Last-seen is
 * recorded off the request path, only when the recorded time is at least
 * SessionSeenInterval() old, so that its writes are bounded by the number
 * of sessions, not of requests: in the cache entry, and, unless another
 * backend got there first, as a note for the last-seen writer (seen.c) to
 * write to the table.  Nothing is written here.
 */
void
SessionNoteUse(const SessionRecord *rec, TimestampTz now)
{
	if ((rec->last_seen_at == DT_NOEND ||
		 now - rec->last_seen_at >= SessionSeenInterval(rec->kind)) &&
		CacheSessionSeen(rec, now))
		WorkerNoteSeen(rec->kind, &rec->id, now);
}
