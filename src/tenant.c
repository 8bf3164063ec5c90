/*-------------------------------------------------------------------------
 *
 * tenant.c
 *		Which tenant a request acts for, and the audited admin bypass.
 *
 * request.c asks TenantForRequest() which tenant applies: the one named by
 * the application (slug or uuid text, typically derived from a subdomain,
 * header or path), else the session's own.  Either way the user's
 * membership is checked now, against the tables, so a removal that has
 * committed is honoured by the very next auth_begin.  Lookups run with the
 * latest snapshot, as session.c's do.
 *
 * admin_begin(reason) lets one transaction see every tenant's rows: the
 * isolation helpers (src/sql/80_tenant.sql) add a second permissive policy,
 * for members of authctx_admin only, that passes when authctx.admin_bypass()
 * is true.  The admin_bypass audit event is written by a background worker
 * in its own transaction, so it survives a rollback; if it cannot be
 * written, the bypass is refused (fail closed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_admin_begin);

static SPIPlanPtr tenant_by_slug_plan = NULL;
static SPIPlanPtr tenant_by_id_plan = NULL;
static SPIPlanPtr membership_plan = NULL;

static const char *const tenant_by_slug_sql =
"SELECT t.id, m.role FROM authctx.tenants t"
"  LEFT JOIN authctx.memberships m"
"    ON m.tenant_id OPERATOR(pg_catalog.=) t.id AND m.user_id OPERATOR(pg_catalog.=) $1"
" WHERE t.slug OPERATOR(pg_catalog.=) $2";

static const char *const tenant_by_id_sql =
"SELECT t.id, m.role FROM authctx.tenants t"
"  LEFT JOIN authctx.memberships m"
"    ON m.tenant_id OPERATOR(pg_catalog.=) t.id AND m.user_id OPERATOR(pg_catalog.=) $1"
" WHERE t.id OPERATOR(pg_catalog.=) $2";

static const char *const membership_sql =
"SELECT m.tenant_id, m.role FROM authctx.memberships m"
" WHERE m.user_id OPERATOR(pg_catalog.=) $1 AND m.tenant_id OPERATOR(pg_catalog.=) $2";

/* Nothing to define yet; kept so _PG_init reads uniformly. */
void
TenantInit(void)
{
}

/* Prepare and keep a plan with arguments (uuid, argtype2). */
static SPIPlanPtr
TenantPlan(SPIPlanPtr *slot, const char *sql, Oid argtype2)
{
	if (*slot == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, argtype2};
		SPIPlanPtr	plan = SPI_prepare(sql, 2, argtypes);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare tenant lookup: %s",
				 SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

/* Is str the canonical text form of a uuid (8-4-4-4-12 hex digits)? */
static bool
TenantLooksLikeUuid(const char *str)
{
	if (strlen(str) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (str[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) str[i]))
			return false;
	}
	return true;
}

/*
 * Decide the request's tenant and the user's role there.  Returns false
 * when the user may not act in the tenant asked for (not a member, no such
 * tenant, or an API key used outside its own tenant); the caller raises
 * 42501.  Must be called as a role that reads the tables; SPI is
 * connected here only on a cache miss.
 *
 * The session's own tenant comes with the record (SessionLookup read the
 * membership with it, from the cache or the tables); a tenant named by the
 * request is looked up in the membership cache first, then in the tables,
 * with the cache stamp read before the snapshot.
 */
bool
TenantForRequest(const pg_uuid_t *user_id, const SessionRecord *rec,
				 const char *requested, pg_uuid_t *tenant_id,
				 bool *has_tenant, char *role)
{
	Datum		args[2];
	SPIPlanPtr	plan = NULL;
	bool		isnull;
	Datum		d;
	int			ret;
	pg_uuid_t  *named_uuid = NULL;
	uint64		stamp = 0;
	bool		resolved = false;

	*has_tenant = false;
	role[0] = '\0';
	args[0] = UUIDPGetDatum((pg_uuid_t *) user_id);

	if (requested != NULL)
	{
		if (TenantLooksLikeUuid(requested))
		{
			args[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(requested));
			named_uuid = DatumGetUUIDP(args[1]);
		}
		else
			args[1] = CStringGetTextDatum(requested);
		resolved = CacheMemberGet(user_id, named_uuid, requested, tenant_id, role);
		if (!resolved)
			stamp = CacheStamp();	/* before GetLatestSnapshot() */
	}
	else if (rec->has_tenant && rec->member_known)
	{
		if (!rec->is_member)
			return false;		/* no longer a member of its own tenant */
		memcpy(tenant_id, &rec->tenant_id, sizeof(pg_uuid_t));
		strlcpy(role, rec->role, NAMEDATALEN);
		resolved = true;
	}
	else if (rec->has_tenant)
		args[1] = UUIDPGetDatum((pg_uuid_t *) &rec->tenant_id);
	else
		return true;			/* no tenant: the context has none */

	if (!resolved)
	{
		SessionSpiConnect();
		if (requested == NULL)
			plan = TenantPlan(&membership_plan, membership_sql, UUIDOID);
		else if (named_uuid != NULL)
			plan = TenantPlan(&tenant_by_id_plan, tenant_by_id_sql, UUIDOID);
		else
			plan = TenantPlan(&tenant_by_slug_plan, tenant_by_slug_sql, TEXTOID);
		ret = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(),
								   InvalidSnapshot, true, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "tenant lookup failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			return false;		/* no such tenant, or no longer a member */

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		memcpy(tenant_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (isnull)
			return false;		/* the tenant exists, the user is no member */
		strlcpy(role, TextDatumGetCString(d), NAMEDATALEN);
		if (requested != NULL)
			CacheMemberPut(user_id, named_uuid, requested, tenant_id, role, stamp);
	}

	/* an API key acts only in the tenant it was created for */
	if (rec->kind == TOKEN_API_KEY &&
		(!rec->has_tenant || memcmp(&rec->tenant_id, tenant_id, sizeof(pg_uuid_t)) != 0))
		return false;

	*has_tenant = true;
	return true;
}

/*
 * admin_begin(reason): for members of authctx_admin, an audited bypass of
 * tenant isolation for this transaction alone.
 */
Datum
authctx_admin_begin(PG_FUNCTION_ARGS)
{
	Oid			admin_role = get_role_oid("authctx_admin", true);
	char	   *reason;
	const AuthctxContext *ctx;
	StringInfoData payload;
	StringInfoData detail;

	if (!OidIsValid(admin_role) || !has_privs_of_role(GetUserId(), admin_role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to bypass tenant isolation"),
				 errdetail("Only members of role \"authctx_admin\" may call admin_begin().")));

	reason = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (reason == NULL || reason[strspn(reason, " \t\r\n")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("admin_begin requires a reason"),
				 errhint("Say why every tenant's rows are needed, for the audit log.")));
	if (strlen(reason) > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("admin_begin reason is longer than 1000 bytes")));
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call admin_begin within a security-restricted operation")));

	ctx = ContextCurrent();
	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"reason\": ");
	escape_json(&detail, reason);
	appendStringInfoString(&detail, ", \"current_user\": ");
	escape_json(&detail, GetUserNameFromId(GetUserId(), false));
	appendStringInfoChar(&detail, '}');

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"event\": \"admin_bypass\", \"db_role\": ");
	escape_json(&payload, GetUserNameFromId(GetSessionUserId(), false));
	if (ctx->valid)
	{
		appendStringInfo(&payload, ", \"user_id\": \"%s\"",
						 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum((pg_uuid_t *) &ctx->user_id))));
		appendStringInfo(&payload, ", \"session_id\": \"%s\"",
						 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum((pg_uuid_t *) &ctx->session_id))));
		if (ctx->has_tenant)
			appendStringInfo(&payload, ", \"tenant_id\": \"%s\"",
							 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum((pg_uuid_t *) &ctx->tenant_id))));
	}
	appendStringInfo(&payload, ", \"detail\": %s}", detail.data);

	/* the event must outlive this transaction, or there is no bypass */
	if (!WorkerRunAutonomous("audit", payload.data))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not record the admin_bypass audit event"),
				 errdetail("The bypass is refused because it could not be audited."),
				 errhint(RecoveryInProgress() ?
						 "admin_begin is not available on a standby." :
						 "Check max_worker_processes and the server log.")));

	ContextSetAdminBypass(reason);
	PG_RETURN_VOID();
}
