/*-------------------------------------------------------------------------
 *
 * context_accessors.c
 *		The context module's accessors: what policies and applications read.
 *
 * context.c publishes the context and guards it; these SQL-callable
 * functions read what it published (ContextCurrent(), which answers "no
 * context" unless the context in force is trusted).  They are STABLE and
 * PARALLEL SAFE, called once per row in RLS policies, so they read a struct
 * and never parse text, and a uuid result is cached per call site until
 * the context changes (authctx_ctx_generation).  ContextRowDatum() builds
 * the authctx.context row that auth_begin returns and current() answers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_user_id);
PG_FUNCTION_INFO_V1(authctx_tenant_id);
PG_FUNCTION_INFO_V1(authctx_role);
PG_FUNCTION_INFO_V1(authctx_session_id);
PG_FUNCTION_INFO_V1(authctx_current);
PG_FUNCTION_INFO_V1(authctx_has_role);
PG_FUNCTION_INFO_V1(authctx_has_scope);
PG_FUNCTION_INFO_V1(authctx_is_authenticated);
PG_FUNCTION_INFO_V1(authctx_admin_bypass);
PG_FUNCTION_INFO_V1(authctx_amr);
PG_FUNCTION_INFO_V1(authctx_claims);

/* ---------------------------------------------------------------------
 * Accessors: STABLE, PARALLEL SAFE; NULL (or false) without a context.
 * ---------------------------------------------------------------------
 */

static Datum
UuidDatum(const pg_uuid_t *u)
{
	pg_uuid_t  *r = palloc(sizeof(pg_uuid_t));

	memcpy(r, u, sizeof(pg_uuid_t));
	return UUIDPGetDatum(r);
}

/* A uuid datum cached per call site until the context changes. */
typedef struct AccessorCache
{
	uint64		generation;
	pg_uuid_t	value;
} AccessorCache;

static Datum
CachedUuidDatum(FunctionCallInfo fcinfo, const pg_uuid_t *u)
{
	AccessorCache *c;

	if (fcinfo->flinfo == NULL)
		return UuidDatum(u);
	c = (AccessorCache *) fcinfo->flinfo->fn_extra;
	if (c == NULL || c->generation != authctx_ctx_generation ||
		memcmp(&c->value, u, sizeof(pg_uuid_t)) != 0)
	{
		/* a fresh copy: a datum handed out earlier must stay unchanged */
		c = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(AccessorCache));
		c->generation = authctx_ctx_generation;
		c->value = *u;
		fcinfo->flinfo->fn_extra = c;
	}
	return UUIDPGetDatum(&c->value);
}

Datum
authctx_user_id(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();

	if (!ctx->valid)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(CachedUuidDatum(fcinfo, &ctx->user_id));
}

/*
 * tenant_id() is what isolation policies compare with; with no tenant in
 * context it returns NULL (no row matches), or raises 28000 when
 * authctx.missing_context = error and no admin bypass is active.
 */
Datum
authctx_tenant_id(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();

	if (ctx->valid && ctx->has_tenant)
		PG_RETURN_DATUM(CachedUuidDatum(fcinfo, &ctx->tenant_id));
	if (authctx_missing_context == MISSING_CONTEXT_ERROR && !ContextAdminBypass())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no tenant context in this transaction"),
				 errhint("Call auth_begin(token) or auth_begin(token, tenant) at the start of the transaction.")));
	PG_RETURN_NULL();
}

Datum
authctx_role(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();

	if (!ctx->valid || ctx->role[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(ctx->role));
}

Datum
authctx_session_id(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();

	if (!ctx->valid || !ctx->has_session)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(CachedUuidDatum(fcinfo, &ctx->session_id));
}

Datum
authctx_is_authenticated(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ContextCurrent()->valid);
}

Datum
authctx_has_role(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();
	text	   *want;

	if (!ctx->valid || PG_ARGISNULL(0) || ctx->role[0] == '\0')
		PG_RETURN_BOOL(false);
	want = PG_GETARG_TEXT_PP(0);
	PG_RETURN_BOOL(strlen(ctx->role) == VARSIZE_ANY_EXHDR(want) &&
				   memcmp(ctx->role, VARDATA_ANY(want),
						  VARSIZE_ANY_EXHDR(want)) == 0);
}

/*
 * Sessions carry every scope; API keys only those they were created with,
 * a JWT those of its "scope" and "scp" claims.
 */
Datum
authctx_has_scope(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();
	text	   *want;
	const char *p;
	size_t		wlen;

	if (!ctx->valid || PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	if (strcmp(ctx->auth_method, "api_key") != 0 &&
		strcmp(ctx->auth_method, "jwt") != 0)
		PG_RETURN_BOOL(true);
	if (ctx->scopes == NULL)
		PG_RETURN_BOOL(false);
	want = PG_GETARG_TEXT_PP(0);
	wlen = VARSIZE_ANY_EXHDR(want);
	/* newline-separated; auth_begin refuses a key or JWT whose scopes hold one */
	p = ctx->scopes;
	while (*p)
	{
		const char *end = strchr(p, '\n');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len == wlen && memcmp(p, VARDATA_ANY(want), wlen) == 0)
			PG_RETURN_BOOL(true);
		if (!end)
			break;
		p = end + 1;
	}
	PG_RETURN_BOOL(false);
}

Datum
authctx_admin_bypass(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ContextAdminBypass());
}

/*
 * The context in force as an authctx.context row: what auth_begin returns
 * and authctx.current() answers.  The row type's descriptor is looked up
 * once per call site and kept in fn_extra.
 */
Datum
ContextRowDatum(FunctionCallInfo fcinfo)
{
	const AuthctxContext *ctx = ContextCurrent();
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	Datum		values[6];
	bool		nulls[6] = {false};

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

	if (ctx->valid)
		values[0] = UuidDatum(&ctx->user_id);
	else
		nulls[0] = true;
	if (ctx->valid && ctx->has_tenant)
		values[1] = UuidDatum(&ctx->tenant_id);
	else
		nulls[1] = true;
	if (ctx->valid && ctx->role[0])
		values[2] = PointerGetDatum(cstring_to_text(ctx->role));
	else
		nulls[2] = true;
	if (ctx->valid && ctx->has_session)
		values[3] = UuidDatum(&ctx->session_id);
	else
		nulls[3] = true;
	if (ctx->auth_method[0])
		values[4] = PointerGetDatum(cstring_to_text(ctx->auth_method));
	else
		nulls[4] = true;
	if (ctx->valid && ctx->expires_at != DT_NOBEGIN &&
		ctx->expires_at != DT_NOEND)
		values[5] = TimestampTzGetDatum(ctx->expires_at);
	else
		nulls[5] = true;
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* authctx.current(): the whole context as authctx.context, or NULL. */
Datum
authctx_current(PG_FUNCTION_ARGS)
{
	if (!ContextCurrent()->valid && !ContextAdminBypass())
		PG_RETURN_NULL();
	PG_RETURN_DATUM(ContextRowDatum(fcinfo));
}

/*
 * authctx.amr(): how the context's user authenticated, as text[]; empty
 * when nothing was recorded, NULL without a context.
 */
Datum
authctx_amr(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();
	ArrayBuildState *astate;
	const char *p;

	if (!ctx->valid)
		PG_RETURN_NULL();
	astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	p = ctx->amr;
	while (p != NULL && *p)
	{
		const char *end = strchr(p, '\n');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len > 0)
			accumArrayResult(astate,
							 PointerGetDatum(cstring_to_text_with_len(p, (int) len)),
							 false, TEXTOID, CurrentMemoryContext);
		p = end ? end + 1 : NULL;
	}
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

/* A jsonb datum cached per call site until the context changes. */
typedef struct ClaimsCache
{
	uint64		generation;
	Datum		value;
} ClaimsCache;

/*
 * authctx.claims(): the verified claims of the context's JWT as jsonb, or
 * NULL.  Parsed once per call site and context, not once per row.
 */
Datum
authctx_claims(PG_FUNCTION_ARGS)
{
	const AuthctxContext *ctx = ContextCurrent();
	ClaimsCache *c;
	MemoryContext old;

	if (!ctx->valid || ctx->claims == NULL ||
		strcmp(ctx->auth_method, "jwt") != 0)
		PG_RETURN_NULL();
	if (fcinfo->flinfo == NULL)
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(ctx->claims)));
	c = (ClaimsCache *) fcinfo->flinfo->fn_extra;
	if (c == NULL || c->generation != authctx_ctx_generation)
	{
		/* a fresh copy: a datum handed out earlier must stay unchanged */
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		c = palloc(sizeof(ClaimsCache));
		c->value = DirectFunctionCall1(jsonb_in, CStringGetDatum(ctx->claims));
		c->generation = authctx_ctx_generation;
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = c;
	}
	PG_RETURN_DATUM(c->value);
}
