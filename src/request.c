/*-------------------------------------------------------------------------
 *
 * request.c
 *		auth_begin() and auth_end(): the only place a token is validated.
 *
 * The walk of one request:
 *	 parse the token and check its checksum (token.c; no table is read for
 *	 garbage) -> look up the session or API key by its public id and check
 *	 it: verifier in constant time, expiry by the wall clock, idle timeout,
 *	 revocation and user status (session.c, SessionValidate) -> ask
 *	 tenant.c which tenant applies and whether the user may act there ->
 *	 publish the context for this transaction (context.c) -> record the use
 *	 (session.c, SessionNoteUse).
 *
 * This file calls the token, session, tenant and context modules only.
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
 * The request path writes nothing: last-seen times go to the last-seen
 * writer (seen.c), which writes them off the request path.  So auth_begin works in BEGIN READ ONLY
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
 * do, the same for every cause.  Also jwt.c's.
 */
void
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

/* Warn, on every call, when the caller's role bypasses row level security. */
void
RequestWarnIfBypassesRls(void)
{
	if (RequestRoleBypassesRls())
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("role \"%s\" bypasses row level security: tenant isolation policies will not apply",
						GetUserNameFromId(GetUserId(), false)),
				 errhint("Call auth_begin as an application role without SUPERUSER or BYPASSRLS.")));
}

/* The user may not act in the tenant asked for (no such tenant, or no member). */
void
RequestRefuseTenant(void)
{
	/* the hint says what to do and names no tenant, existing or not */
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("user is not a member of the requested tenant"),
			 errhint("Name a tenant the user belongs to (authctx.my_tenants() lists them), or log in again.")));
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

/*
 * Look up and check the token (session.c), then resolve the tenant
 * (tenant.c).
 */
static void
RequestValidate(const AuthctxToken *tok, const char *requested, RequestResult *res)
{
	memset(res, 0, sizeof(*res));
	res->tenant = TENANT_ALLOWED;
	res->ok = SessionValidate(tok, &res->rec, &res->now);
	if (res->ok)
		res->tenant = TenantForRequest(&res->rec.user_id, &res->rec, requested,
									   &res->tenant_id, &res->has_tenant, res->role);
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
	Datum		result;

	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call auth_begin within a security-restricted operation"),
				 errhint("Call auth_begin in the transaction's own statements, not from an index expression, a materialized view's query or a maintenance command.")));
	AuthctxCheckVersion();

	if (PG_ARGISNULL(0))
		RequestReject();
	/* an OpenID Connect access token (a JWT): jwt.c verifies and publishes */
	if (JwtAuthBegin(fcinfo, &result))
		return result;
	t = PG_GETARG_TEXT_PP(0);
	if (!TokenParse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &tok) ||
		(tok.kind != TOKEN_SESSION && tok.kind != TOKEN_API_KEY))
	{
		TokenForget(&tok);
		RequestReject();
	}
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		requested = text_to_cstring(PG_GETARG_TEXT_PP(1));

	RequestValidate(&tok, requested, &res);
	TokenForget(&tok);

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
		RequestRefuseTenant();
	RequestWarnIfBypassesRls();

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

	/* last-seen, recorded off the request path */
	SessionNoteUse(&res.rec, res.now);

	PG_RETURN_DATUM(ContextRowDatum(fcinfo));
}

/* auth_end(): clear the context inside the current transaction. */
Datum
authctx_auth_end(PG_FUNCTION_ARGS)
{
	ContextClear();
	PG_RETURN_VOID();
}
