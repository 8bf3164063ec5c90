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
 * is true.  The admin_bypass audit event is written in a transaction of
 * its own (audit.c, AuditWriteDurable), so it survives a rollback; if it
 * cannot be written, the bypass is refused (fail closed).
 *
 * This file calls identity (tenants and memberships), context and audit.
 *
 * The isolation helpers keep what a table looked like before isolation
 * (RLS flags, the tenant column's old default, the index they made) in
 * authctx.isolated_tables, which no role may write.  Those helpers run as
 * their caller on purpose (only a table's owner may change its policies),
 * so they reach the table through two gates here, _isolation_save and
 * _isolation_forget: each checks that the calling role has the privileges
 * of the table's owner, then calls the SECURITY DEFINER function
 * authctx.<gate>_unchecked, which has no EXECUTE grant at all (fmgr does
 * not check EXECUTE; the executor does).  A SECURITY DEFINER function
 * written in SQL cannot do that check itself: inside it, current_user is
 * its owner, and the caller is nowhere to be read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_admin_begin);
PG_FUNCTION_INFO_V1(authctx_isolation_save);
PG_FUNCTION_INFO_V1(authctx_isolation_forget);

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * A new row refused by a row level security policy in a transaction with
 * no tenant in its context (an INSERT: without a tenant, an UPDATE finds no
 * row) gets a hint naming auth_begin, since under missing_context = deny
 * core's message names the table and not the cause.  Only the hint is
 * added, to the ErrorData about to be reported (emit_log_hook runs before
 * the message goes to the log and to the client, when the error is logged
 * at all: log_min_messages at error or below, the default).  The policy
 * refused the row as before.
 */
static void
TenantEmitLog(ErrorData *edata)
{
	static const char rls_prefix[] = "new row violates row-level security policy";
	const AuthctxContext *ctx;

	if (edata->elevel == ERROR &&
		edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE &&
		edata->hint == NULL && edata->message_id != NULL &&
		strncmp(edata->message_id, rls_prefix, sizeof(rls_prefix) - 1) == 0 &&
		MyProc != NULL)
	{
		ctx = ContextCurrent();
		/* EmitErrorReport runs this in the error's own memory context */
		if (!ctx->valid || !ctx->has_tenant)
			edata->hint = pstrdup(ctx->valid ?
								  "This transaction's authentication context has no tenant: call auth_begin(token, tenant) naming one." :
								  "This transaction has no authentication context: call auth_begin(token) at its start.");
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Install the hint for writes refused without a tenant. */
void
TenantInit(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = TenantEmitLog;
}

/*
 * An API key that names a tenant may act only if the name is its own
 * tenant's.  A slug is resolved from the tenants table alone, never from
 * the membership cache, and every other tenant gets the same answer, so
 * the key's holder learns neither whether that tenant exists nor whether
 * the key's user belongs to it.
 */
static TenantDecision
TenantKeyNamed(const SessionRecord *rec, const char *requested)
{
	pg_uuid_t	named;

	if (!rec->has_tenant)
		return TENANT_KEY_ELSEWHERE;
	if (!IdentityTenantNamed(requested, &named))
		return TENANT_KEY_ELSEWHERE;	/* no tenant is the key's own */
	return memcmp(&named, &rec->tenant_id, sizeof(pg_uuid_t)) == 0 ?
		TENANT_ALLOWED : TENANT_KEY_ELSEWHERE;
}

/*
 * Decide the request's tenant and the user's role there.  Returns
 * TENANT_NOT_MEMBER when the user may not act in the tenant asked for (not
 * a member, or no such tenant: one answer, so that tenants cannot be
 * probed) and TENANT_KEY_ELSEWHERE when an API key names a tenant not its
 * own (TenantKeyNamed); the caller raises 42501 for both, each with its
 * own message.
 *
 * The session's own tenant comes with the record (SessionLookup read the
 * membership with it, from the cache or the tables); a tenant named by the
 * request is identity's to resolve (IdentityMembership: the membership
 * cache first, then the tables).
 */
TenantDecision
TenantForRequest(const pg_uuid_t *user_id, const SessionRecord *rec,
				 const char *requested, pg_uuid_t *tenant_id,
				 bool *has_tenant, char *role)
{
	*has_tenant = false;
	role[0] = '\0';

	/* a key naming its own tenant goes on as if it had named none */
	if (requested != NULL && rec->kind == TOKEN_API_KEY)
	{
		TenantDecision d = TenantKeyNamed(rec, requested);

		if (d != TENANT_ALLOWED)
			return d;
		requested = NULL;
	}

	if (requested != NULL)
	{
		if (!IdentityMembership(user_id, requested, tenant_id, role))
			return TENANT_NOT_MEMBER;	/* no such tenant, or no member */
	}
	else if (rec->has_tenant && rec->member_known)
	{
		if (!rec->is_member)
			return TENANT_NOT_MEMBER;	/* no longer a member of its own tenant */
		*tenant_id = rec->tenant_id;
		strlcpy(role, rec->role, NAMEDATALEN);
	}
	else if (rec->has_tenant)
	{
		if (!IdentityMemberRoleNow(&rec->tenant_id, user_id, role))
			return TENANT_NOT_MEMBER;
		*tenant_id = rec->tenant_id;
	}
	else
		return TENANT_ALLOWED;	/* no tenant: the context has none */

	/* an API key acts only in the tenant it was created for */
	if (rec->kind == TOKEN_API_KEY &&
		(!rec->has_tenant || memcmp(&rec->tenant_id, tenant_id, sizeof(pg_uuid_t)) != 0))
		return TENANT_KEY_ELSEWHERE;

	*has_tenant = true;
	return TENANT_ALLOWED;
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
	StringInfoData detail;

	AuthctxCheckVersion();

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

	/* the event must outlive this transaction, or there is no bypass */
	if (!AuditWriteDurable("admin_bypass",
						   ctx->valid ? &ctx->user_id : NULL,
						   ctx->valid && ctx->has_tenant ? &ctx->tenant_id : NULL,
						   ctx->valid ? &ctx->session_id : NULL,
						   detail.data))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not record the admin_bypass audit event"),
				 errdetail("The bypass is refused because it could not be audited."),
				 errhint(RecoveryInProgress() ?
						 "admin_begin is not available on a standby." :
						 "Check max_worker_processes and the server log.")));

	/*
	 * The bypass is about tenants, not scopes: a transaction authenticated
	 * by an API key or a JWT keeps its method, scopes, amr and claims, so
	 * has_scope() still answers from them (a session has every scope either
	 * way).
	 */
	if (ctx->valid && (strcmp(ctx->auth_method, "api_key") == 0 ||
					   strcmp(ctx->auth_method, "jwt") == 0))
	{
		AuthctxContext key = *ctx;
		char	   *scopes = pstrdup(ctx->scopes ? ctx->scopes : "");
		char	   *amr = ctx->amr ? pstrdup(ctx->amr) : NULL;
		char	   *claims = ctx->claims ? pstrdup(ctx->claims) : NULL;

		ContextSetAdminBypass(reason);
		ContextPublish(&key.user_id, key.has_tenant ? &key.tenant_id : NULL,
					   key.role, key.has_session ? &key.session_id : NULL,
					   key.auth_method, key.expires_at, scopes, amr, claims);
	}
	else
		ContextSetAdminBypass(reason);
	PG_RETURN_VOID();
}

/*
 * Does the current role have the privileges of the owner of relation
 * relid?  Raises 42P01 for a relation that does not exist.
 */
static bool
TenantCallerOwns(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return has_privs_of_role(GetUserId(), owner);
}

/*
 * The gate: call authctx.<this function's name>_unchecked with this call's
 * arguments, once the caller is known to own the table in the first one.
 */
static Datum
TenantCallIfOwner(FunctionCallInfo fcinfo)
{
	Oid			self = fcinfo->flinfo->fn_oid;
	Oid			relid;
	Oid		   *argtypes;
	int			nargs;
	char	   *target;
	Oid			target_oid;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(inner, 3);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);

	/* check before locking, so that a stranger cannot even queue a lock */
	if (!TenantCallerOwns(relid))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	/* one isolation change at a time per table; then look again */
	LockRelationOid(relid, ShareUpdateExclusiveLock);
	if (!TenantCallerOwns(relid))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));

	get_func_signature(self, &argtypes, &nargs);
	if (nargs > 3 || nargs != PG_NARGS())
		elog(ERROR, "unexpected signature for %s", get_func_name(self));
	target = psprintf("%s_unchecked", get_func_name(self));
	target_oid = LookupFuncName(list_make2(makeString(get_namespace_name(get_func_namespace(self))),
										   makeString(target)),
								nargs, argtypes, false);
	fmgr_info(target_oid, &flinfo);
	InitFunctionCallInfoData(*inner, &flinfo, nargs, PG_GET_COLLATION(), NULL, NULL);
	for (int i = 0; i < nargs; i++)
		inner->args[i] = fcinfo->args[i];
	(void) FunctionCallInvoke(inner);
	PG_RETURN_VOID();
}

/* _isolation_save(tbl, col, idx): record a table's state before isolation. */
Datum
authctx_isolation_save(PG_FUNCTION_ARGS)
{
	return TenantCallIfOwner(fcinfo);
}

/* _isolation_forget(tbl): drop the record once isolation is undone. */
Datum
authctx_isolation_forget(PG_FUNCTION_ARGS)
{
	return TenantCallIfOwner(fcinfo);
}
