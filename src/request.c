/*-------------------------------------------------------------------------
 *
 * request.c
 *		auth_begin() and auth_end(): the only place a token is validated.
 *
 * The walk of one request:
 *	 parse the token and check its checksum (token.c; no table is read for
 *	 garbage) -> find the session or API key by its public id (session.c)
 *	 -> compare the verifier in constant time, check expiry by the wall
 *	 clock, idle timeout, revocation and user status -> ask tenant.c which
 *	 tenant applies and whether the user may act there -> publish the context
 *	 for this transaction (context.c).
 *
 * No business logic lives here.  Every authentication failure raises
 * SQLSTATE 28000 with one generic message and no detail, so the reason
 * (unknown, expired, revoked, disabled...) is never revealed and the token
 * never appears.  "No such id" and "wrong secret" cost the same work: an
 * unknown id still costs a verifier computation, a comparison, and the
 * user and membership reads of a found one (session.c); a wrong secret for
 * an id the cache knows is checked again against the tables, which is what
 * an unknown id, never cached, always costs.
 *
 * The request path writes nothing: last-seen times go to worker.c, which
 * writes them off the request path.  So auth_begin works in BEGIN READ ONLY
 * and on a hot standby.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_auth_begin);
PG_FUNCTION_INFO_V1(authctx_auth_end);

/*
 * The one message for every authentication failure; the hint says what to
 * do, the same for every cause.
 */
static void
RequestReject(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("authentication failed"),
			 errhint("The token is invalid, expired or revoked.  Log in again or call authctx.refresh() for a new session token; replace a refused API key.  auth_begin takes a session token or an API key, never a refresh token.")));
}

/*
 * Does the current role bypass row level security?  auth_begin warns when it
 * does, on every call, so the answer is remembered for the last role asked
 * about and forgotten whenever pg_authid changes (as superuser() does).
 */
static Oid	request_bypass_role = InvalidOid;
static bool request_bypass = false;

static void
RequestRoleChanged(Datum arg, int cacheid, uint32 hashvalue)
{
	request_bypass_role = InvalidOid;
}

static bool
RequestRoleBypassesRls(void)
{
	static bool registered = false;
	Oid			role = GetUserId();

	if (!registered)
	{
		CacheRegisterSyscacheCallback(AUTHOID, RequestRoleChanged, (Datum) 0);
		registered = true;
	}
	if (role != request_bypass_role)
	{
		request_bypass = superuser_arg(role) || has_bypassrls_privilege(role);
		request_bypass_role = role;
	}
	return request_bypass;
}

void
RequestInit(void)
{
}

/* Result of validating one token. */
typedef struct RequestResult
{
	SessionRecord rec;
	pg_uuid_t	tenant_id;
	bool		has_tenant;
	char		role[NAMEDATALEN];
	TenantDecision tenant;		/* TENANT_ALLOWED unless refused */
	bool		ok;
	TimestampTz now;			/* the wall clock when validated */
} RequestResult;

/* Does the verifier match the record's (a constant-time compare, always)? */
static bool
RequestVerifierMatches(const unsigned char *verifier, bool found,
					   const SessionRecord *rec)
{
	static const unsigned char zero_verifier[AUTHCTX_TOKEN_HASH_LEN] = {0};

	return CryptoEqual(verifier,
					   found && rec->has_verifier ? rec->verifier : zero_verifier,
					   AUTHCTX_TOKEN_HASH_LEN);
}

/*
 * Look up and check the token, then resolve the tenant.  The cache answers
 * first; a miss reads the tables by primary key (no SPI, no privilege
 * check: application roles cannot read the tables themselves).
 */
static void
RequestValidate(const AuthctxToken *tok, const char *requested, RequestResult *res)
{
	unsigned char verifier[AUTHCTX_TOKEN_HASH_LEN];
	bool		found;
	bool		match;
	TimestampTz now;

	memset(res, 0, sizeof(*res));
	res->tenant = TENANT_ALLOWED;
	TokenVerifier(tok, verifier);

	/* same work whether or not the id exists */
	found = SessionLookup(tok->kind, (const pg_uuid_t *) tok->id, false, &res->rec);
	match = RequestVerifierMatches(verifier, found, &res->rec);

	/*
	 * A wrong secret for a cached id is checked again against the tables.
	 * Not for correctness (the cache never answers "valid" when the tables
	 * would not): so that a wrong secret costs what an unknown id costs,
	 * which always misses the cache and reads the tables, and the time of a
	 * rejection does not tell whether the id exists.
	 */
	if (found && !match && res->rec.from_cache)
	{
		found = SessionLookup(tok->kind, (const pg_uuid_t *) tok->id, true, &res->rec);
		match = RequestVerifierMatches(verifier, found, &res->rec);
	}
	CryptoZero(verifier, sizeof(verifier));

	now = GetCurrentTimestamp();	/* the wall clock, not now() */
	res->now = now;
	res->ok = found && match && res->rec.has_verifier &&
		!res->rec.revoked && !res->rec.user_disabled &&
		!res->rec.scopes_bad && res->rec.expires_at > now;
	if (res->ok && tok->kind == TOKEN_SESSION && authctx_session_idle_timeout > 0 &&
		res->rec.last_seen_at != DT_NOEND &&
		res->rec.last_seen_at + (int64) authctx_session_idle_timeout * USECS_PER_SEC <= now)
		res->ok = false;

	if (res->ok)
		res->tenant = TenantForRequest(&res->rec.user_id, &res->rec, requested,
									   &res->tenant_id, &res->has_tenant, res->role);
}

/*
 * Build the authctx.context row returned by auth_begin.  The row type's
 * descriptor is looked up once per call site and kept in fn_extra.
 */
static Datum
RequestResultDatum(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	const AuthctxContext *ctx = ContextCurrent();
	Datum		values[6];
	bool		nulls[6] = {false};
	pg_uuid_t  *u;

	if (tupdesc == NULL)
	{
		MemoryContext old;

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = tupdesc;
	}

	u = palloc(sizeof(pg_uuid_t));
	*u = ctx->user_id;
	values[0] = UUIDPGetDatum(u);
	if (ctx->has_tenant)
	{
		u = palloc(sizeof(pg_uuid_t));
		*u = ctx->tenant_id;
		values[1] = UUIDPGetDatum(u);
	}
	else
		nulls[1] = true;
	if (ctx->role[0])
		values[2] = CStringGetTextDatum(ctx->role);
	else
		nulls[2] = true;
	u = palloc(sizeof(pg_uuid_t));
	*u = ctx->session_id;
	values[3] = UUIDPGetDatum(u);
	values[4] = CStringGetTextDatum(ctx->auth_method);
	if (ctx->expires_at == DT_NOEND || ctx->expires_at == DT_NOBEGIN)
		nulls[5] = true;
	else
		values[5] = TimestampTzGetDatum(ctx->expires_at);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * auth_begin(token text [, tenant text]) -> authctx.context
 *
 * Validates the token and publishes the context for this transaction.
 */
Datum
authctx_auth_begin(PG_FUNCTION_ARGS)
{
	AuthctxToken tok;
	RequestResult res;
	text	   *t;
	char	   *requested = NULL;
	TimestampTz expires;

	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call auth_begin within a security-restricted operation"),
				 errhint("Call auth_begin in the transaction's own statements, not from an index expression, a materialized view's query or a maintenance command.")));
	AuthctxCheckVersion();

	if (PG_ARGISNULL(0))
		RequestReject();
	t = PG_GETARG_TEXT_PP(0);
	if (!TokenParse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &tok) ||
		(tok.kind != TOKEN_SESSION && tok.kind != TOKEN_API_KEY))
	{
		CryptoZero(&tok, sizeof(tok));
		RequestReject();
	}
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		requested = text_to_cstring(PG_GETARG_TEXT_PP(1));

	RequestValidate(&tok, requested, &res);
	CryptoZero(&tok, sizeof(tok));

	if (!res.ok)
		RequestReject();
	/* the hints say what to do and name no tenant, existing or not */
	if (res.tenant == TENANT_KEY_ELSEWHERE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("API key is bound to its own tenant"),
				 errdetail("An API key acts only in the tenant it was created for."),
				 errhint("Call auth_begin(key) without a tenant, or create an API key for the tenant you need.")));
	if (res.tenant == TENANT_NOT_MEMBER)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user is not a member of the requested tenant"),
				 errhint("Name a tenant the user belongs to (authctx.my_tenants() lists them), or log in again.")));

	if (RequestRoleBypassesRls())
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("role \"%s\" bypasses row level security: tenant isolation policies will not apply",
						GetUserNameFromId(GetUserId(), false)),
				 errhint("Call auth_begin as an application role without SUPERUSER or BYPASSRLS.")));

	/* the absolute expiry; the idle limit moves with every use */
	expires = res.rec.expires_at;

	ContextPublish(&res.rec.user_id,
				   res.has_tenant ? &res.tenant_id : NULL,
				   res.role,
				   &res.rec.id,
				   res.rec.kind == TOKEN_API_KEY ? "api_key" : "session",
				   expires,
				   res.rec.kind == TOKEN_API_KEY ? res.rec.scopes : NULL,
				   res.rec.kind == TOKEN_SESSION ? res.rec.scopes : NULL,
				   NULL);

	/*
	 * Last-seen is recorded off the request path, at most once an interval:
	 * in the cache entry, and, unless another backend got there first, as a
	 * note for the worker to write to the table.
	 */
	if ((res.rec.last_seen_at == DT_NOEND ||
		 res.now - res.rec.last_seen_at >=
		 (int64) authctx_last_seen_interval * USECS_PER_SEC) &&
		CacheSessionSeen(&res.rec, res.now))
		WorkerNoteSeen(res.rec.kind, &res.rec.id, res.now);

	PG_RETURN_DATUM(RequestResultDatum(fcinfo));
}

/* auth_end(): clear the context inside the current transaction. */
Datum
authctx_auth_end(PG_FUNCTION_ARGS)
{
	ContextClear();
	PG_RETURN_VOID();
}
