/*-------------------------------------------------------------------------
 *
 * context.c
 *		The per-transaction authentication context, its guards, accessors.
 *
 * Design
 * ------
 * The context is published as transaction-local GUCs (authctx.user_id,
 * authctx.tenant_id, authctx.role, authctx.session_id, plus hidden
 * authctx.credential, which packs the authentication method, the expiry,
 * the amr (authentication methods) and the API key's or JWT's scopes as
 * "method;expiry;amr;scopes", hidden authctx.admin_bypass, and hidden
 * authctx.claims, a JWT's verified claims, set only when a JWT published
 * them or to clear them).  Few settings rather than one per field: every
 * set_config_option costs a lookup, a malloc'd copy and a stack entry undone
 * at commit, and auth_begin publishes on every request.  GUCs give us, for free, exactly the lifetime the
 * contract asks for: values set with GUC_ACTION_LOCAL are undone at COMMIT,
 * ROLLBACK, ROLLBACK TO SAVEPOINT, PREPARE TRANSACTION and in-procedure
 * COMMIT, and they are copied to parallel workers (they are PGC_USERSET and
 * not at their default; see can_skip_gucvar in guc.c).
 *
 * Nobody but this file may change them:
 *	- the check hook accepts a value only while authctx_context_setting is
 *	  true (set around our own set_config_option calls), when the value is
 *	  the empty boot default, or while a parallel worker restores its
 *	  leader's state (InitializingParallelWorker, source "session");  that
 *	  refuses SET, SET LOCAL, set_config() with a value, function SET
 *	  clauses and ALTER ROLE/DATABASE values applied at connection time;
 *	- without preloading, a value can exist before the library loads: SET,
 *	  set_config(), connection options, stored ALTER ROLE/DATABASE settings
 *	  and postgresql.conf all create a placeholder, which
 *	  DefineCustomStringVariable re-applies (reset value, session value and
 *	  every stacked value) through the check hook.  While defining, the
 *	  check hook accepts only the empty boot value: every other value is
 *	  discarded with a WARNING, so nothing auth_begin did not publish
 *	  survives the library's load;
 *	- RESET and set_config(name, NULL) install the reset value without
 *	  calling the check hook, so the assign hook refuses any change made
 *	  inside a running transaction that did not come from us (transaction
 *	  end and subtransaction abort run in TRANS_COMMIT/TRANS_ABORT state, so
 *	  IsTransactionState() is false there and the rollback goes through);
 *	- GUC_NO_RESET_ALL keeps RESET ALL and DISCARD ALL off them;
 *	- a ProcessUtility hook refuses SET/RESET/ALTER ROLE ... SET/ALTER
 *	  DATABASE ... SET/ALTER SYSTEM naming them, with a clear 42501, before
 *	  anything happens.
 *
 * Defence in depth: every value carries its origin in its "extra" (only the
 * check hook makes extras): the boot value, published by our own code in
 * local transaction L, or restored from a parallel leader.  The GUC
 * machinery hands the same extra back whenever it restores a value (RESET,
 * a stack entry popped at ROLLBACK TO SAVEPOINT or transaction end), so
 * the assign hook always knows where the value in force came from.  The
 * accessors trust the context only when every part of it was published in
 * the current local transaction (MyProc's lxid), or, in a parallel worker,
 * restored from the leader.  Should a value ever reach the variables by a
 * path the check hook does not cover, or outlive its transaction, the
 * accessors still answer "no context".  The test costs one comparison.
 *
 * Holdable cursors.  A WITH HOLD cursor is materialised at COMMIT, while
 * the context is still in force, and its rows stay readable afterwards on
 * the same connection, which a pooler may hand to another client.  So
 * DECLARE ... WITH HOLD is refused in a transaction that has published a
 * context (or an admin bypass), and a holdable cursor declared earlier in
 * a transaction that publishes one later (or whose own query publishes one
 * as COMMIT runs it) is dropped at pre-commit and the commit refused.  The
 * cursors are noticed by an ExecutorEnd hook as COMMIT holds them (not at
 * DECLARE: without preloading, the DECLARE may be what loads the library);
 * the XactCallback runs after the portals are held, and drops them itself,
 * since a held portal would survive the abort that follows.
 *
 * The check hook parses each value into an "extra" and the assign hook
 * copies it into authctx_ctx, so the accessors (called once per row in RLS
 * policies) read a struct and never parse text.  When the value comes from
 * our own ContextPublish, which formatted it from binary a moment earlier,
 * the check hook takes the binary form it was handed (authctx_staged)
 * instead of parsing the text back; parsing remains for every other path
 * (a parallel worker restoring its leader's values).  Assign hooks run on every
 * change, including rollback and parallel restore, so the struct always
 * mirrors the GUCs.
 *
 * The accessors, the SQL-callable readers of that struct, are in
 * context_accessors.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

/* Which part of the context a GUC carries. */
typedef enum ContextField
{
	CF_USER_ID,
	CF_TENANT_ID,
	CF_ROLE,
	CF_SESSION_ID,
	CF_CREDENTIAL,				/* "method;expiry;amr;scopes" */
	CF_ADMIN_BYPASS,
	CF_CLAIMS,					/* a JWT's verified claims (JSON) */
	CF_COUNT
} ContextField;

/* Where a value in force came from (decided by the check hook only). */
typedef enum ContextOrigin
{
	ORIGIN_BOOT,				/* the empty boot value */
	ORIGIN_PUBLISHED,			/* our own code, in local transaction lxid */
	ORIGIN_LEADER				/* a parallel worker's copy of its leader's */
} ContextOrigin;

/* Parsed form of one GUC value, handed from check hook to assign hook. */
typedef struct ContextExtra
{
	ContextOrigin origin;
	LocalTransactionId lxid;	/* ORIGIN_PUBLISHED: the transaction */
	bool		present;		/* value is non-empty */
	pg_uuid_t	uuid;			/* user, tenant, session */
	TimestampTz ts;				/* credential: expiry, DT_NOBEGIN if none */
	char		method[16];		/* credential: session | api_key | jwt | admin */
	int			amr_off;		/* credential: amr at text + amr_off */
	int			scopes_off;		/* credential: scopes at text + scopes_off */
	char		text[FLEXIBLE_ARRAY_MEMBER];
} ContextExtra;

/* Binary form of the value ContextSet is about to set, for the check hook. */
typedef struct ContextStaged
{
	const pg_uuid_t *uuid;
	TimestampTz ts;
	const char *method;
} ContextStaged;

typedef struct ContextGuc
{
	const char *name;			/* full GUC name */
	const char *desc;
	bool		hidden;			/* GUC_NO_SHOW_ALL */
	char	   *value;			/* the GUC's variable */
} ContextGuc;

static ContextGuc authctx_gucs[CF_COUNT] = {
	[CF_USER_ID] = {"authctx.user_id", "User of the current transaction's authentication context.", false},
	[CF_TENANT_ID] = {"authctx.tenant_id", "Tenant of the current transaction's authentication context.", false},
	[CF_ROLE] = {"authctx.role", "Membership role of the current transaction's user in its tenant.", false},
	[CF_SESSION_ID] = {"authctx.session_id", "Session or API key of the current transaction's authentication context.", false},
	[CF_CREDENTIAL] = {"authctx.credential", "How the current transaction authenticated, until when, and the API key's scopes.", true},
	[CF_ADMIN_BYPASS] = {"authctx.admin_bypass", "Reason of an active admin bypass.", true},
	[CF_CLAIMS] = {"authctx.claims", "Verified claims of the current transaction's JWT.", true},
};

/* The published context, mirrored from the GUCs by the assign hooks. */
static AuthctxContext authctx_ctx;
static bool authctx_bypass = false;
static const AuthctxContext authctx_no_ctx = {.expires_at = DT_NOBEGIN};

/* Origin of each field's value in force, mirrored by the assign hooks. */
static struct
{
	bool		present;
	ContextOrigin origin;
	LocalTransactionId lxid;
}			authctx_field[CF_COUNT];

/*
 * The context is trusted when every present field was published in local
 * transaction authctx_trust_lxid (compared with the current one), or all
 * were restored from a parallel leader; recomputed by each assign hook.
 */
static LocalTransactionId authctx_trust_lxid = InvalidLocalTransactionId;
static bool authctx_trust_leader = false;

/* The last local transaction in which our code published a context. */
static LocalTransactionId authctx_published_lxid = InvalidLocalTransactionId;

/* Holdable cursors held by this transaction's COMMIT (TopTransactionContext). */
static List *authctx_held_cursors = NIL;

/*
 * Bumped by every assign hook: accessors cache their result datum in
 * fn_extra (allocated once per call site, in fn_mcxt) and rebuild it only
 * when the context changed, so a policy evaluated for every row allocates
 * nothing per row.
 */
uint64		authctx_ctx_generation = 1;

/* True only around our own set_config_option calls. */
static bool authctx_context_setting = false;
/* Set by ContextSet around one set_config_option call; NULL otherwise. */
static const ContextStaged *authctx_staged = NULL;
/*
 * True while DefineCustom*Variable installs the boot values and re-applies
 * the values of placeholders created before the library was loaded.
 */
static bool authctx_defining = false;

/* authctx.missing_context (MissingContextMode, authctx.h) */
static const struct config_enum_entry missing_context_options[] = {
	{"deny", MISSING_CONTEXT_DENY, false},
	{"error", MISSING_CONTEXT_ERROR, false},
	{NULL, 0, false}
};
int			authctx_missing_context = MISSING_CONTEXT_DENY;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;

/* Is this GUC name one of the protected context parameters? */
static bool
ContextIsProtectedName(const char *name)
{
	if (name == NULL || pg_strncasecmp(name, "authctx.", 8) != 0)
		return false;
	for (int i = 0; i < CF_COUNT; i++)
		if (pg_strcasecmp(name, authctx_gucs[i].name) == 0)
			return true;
	return false;
}

/*
 * Split "method;expiry;amr;scopes" in extra->text after the method: the amr
 * becomes a string of its own (its ';' is overwritten in the extra's copy;
 * the GUC's value is untouched), the scopes are the rest.
 */
static bool
ContextSplitAmr(ContextExtra *extra, const char *semi2)
{
	char	   *semi3 = strchr(semi2 + 1, ';');

	if (semi3 == NULL)
		return false;
	extra->amr_off = (int) (semi2 + 1 - extra->text);
	*semi3 = '\0';
	extra->scopes_off = (int) (semi3 + 1 - extra->text);
	return true;
}

/*
 * Parse "method;expiry;amr;scopes" (expiry may be empty) into extra.  A
 * value staged by ContextSet brings its method and expiry in binary form:
 * only where the amr and the scopes start is read from the text.
 */
static bool
ContextParseCredential(ContextExtra *extra, const ContextStaged *staged)
{
	const char *value = extra->text;
	const char *semi = strchr(value, ';');
	const char *semi2 = semi ? strchr(semi + 1, ';') : NULL;
	char	   *end;

	if (semi2 == NULL)
		return false;
	if (staged != NULL)
	{
		strlcpy(extra->method, staged->method, sizeof(extra->method));
		extra->ts = staged->ts;
		return ContextSplitAmr(extra, semi2);
	}
	if (semi - value >= (ptrdiff_t) sizeof(extra->method))
		return false;
	memcpy(extra->method, value, semi - value);
	extra->method[semi - value] = '\0';
	if (semi2 == semi + 1)
		extra->ts = DT_NOBEGIN;
	else
	{
		long long	v = strtoll(semi + 1, &end, 10);

		if (end != semi2)
			return false;
		extra->ts = (TimestampTz) v;
	}
	return ContextSplitAmr(extra, semi2);
}

/*
 * Parse one value for field f into a malloc'd extra; false if malformed.
 * A value staged by ContextSet is taken in binary form, not parsed.
 */
static bool
ContextParse(ContextField f, const char *value, ContextExtra **out)
{
	size_t		len = value ? strlen(value) : 0;
	ContextExtra *extra = malloc(offsetof(ContextExtra, text) + len + 1);
	const ContextStaged *staged = authctx_context_setting ? authctx_staged : NULL;
	bool		ok = true;

	if (extra == NULL)
		return false;
	memset(extra, 0, offsetof(ContextExtra, text));
	memcpy(extra->text, value ? value : "", len + 1);
	extra->present = len > 0;
	extra->ts = DT_NOBEGIN;
	extra->scopes_off = (int) len;	/* the empty string at the end */
	extra->amr_off = (int) len;

	if (extra->present)
	{
		switch (f)
		{
			case CF_USER_ID:
			case CF_TENANT_ID:
			case CF_SESSION_ID:
				if (len != AUTHCTX_UUID_TEXT_LEN)
					ok = false;		/* values come from our code; never trust */
				else if (staged != NULL && staged->uuid != NULL)
					extra->uuid = *staged->uuid;
				else
				{
					Datum		d = DirectFunctionCall1(uuid_in, CStringGetDatum(value));

					memcpy(&extra->uuid, DatumGetUUIDP(d), sizeof(pg_uuid_t));
				}
				break;
			case CF_CREDENTIAL:
				ok = ContextParseCredential(extra,
											staged != NULL && staged->method != NULL ?
											staged : NULL);
				break;
			case CF_ROLE:
				ok = len < NAMEDATALEN;
				break;
			default:
				break;
		}
	}
	if (!ok)
	{
		free(extra);
		return false;
	}
	*out = extra;
	return true;
}

/*
 * Is the context in force trusted: published by our own code in the current
 * local transaction, or restored from the leader in a parallel worker?
 */
static inline bool
ContextTrusted(void)
{
	return authctx_trust_leader ||
		(authctx_trust_lxid != InvalidLocalTransactionId &&
		 authctx_trust_lxid == AuthctxMyLxid());
}

/* Check hook shared by every context GUC: decides the value's origin. */
static bool
ContextCheck(ContextField f, char **newval, void **extra, GucSource source)
{
	ContextExtra *parsed;
	bool		empty = *newval == NULL || (*newval)[0] == '\0';
	ContextOrigin origin;

	if (authctx_defining)
	{
		/*
		 * A placeholder's value, from SET, set_config(), connection options,
		 * stored settings or postgresql.conf: set before the library was
		 * loaded, so not by us.  Only the boot value may survive.
		 */
		if (!empty)
		{
			GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
			GUC_check_errmsg("discarded a value of parameter \"%s\" set before the authctx library was loaded",
							 authctx_gucs[f].name);
			GUC_check_errdetail("Only auth_begin() and admin_begin() set the authentication context.");
			GUC_check_errhint("Remove the setting from SET commands, connection options, ALTER ROLE/DATABASE ... SET and postgresql.conf.");
			return false;
		}
		origin = ORIGIN_BOOT;
	}
	else if (authctx_context_setting)
		origin = ORIGIN_PUBLISHED;
	else if (empty && source == PGC_S_DEFAULT)
		origin = ORIGIN_BOOT;
	else if (InitializingParallelWorker && source == PGC_S_SESSION)
	{
		/*
		 * RestoreGUCState with the leader's value (published as a session
		 * value by ContextSet).  Settings the worker applies from its role
		 * and database come with other sources and are refused.
		 */
		origin = ORIGIN_LEADER;
	}
	else
	{
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("parameter \"%s\" can only be set by auth_begin()",
						 authctx_gucs[f].name);
		return false;
	}
	if (!ContextParse(f, *newval, &parsed))
	{
		GUC_check_errmsg("invalid value for parameter \"%s\"", authctx_gucs[f].name);
		return false;
	}
	parsed->origin = origin;
	parsed->lxid = origin == ORIGIN_PUBLISHED ? AuthctxMyLxid() : InvalidLocalTransactionId;
	*extra = parsed;
	return true;
}

/*
 * After a field changed: the context is trusted only if every present
 * field has one origin (one publishing transaction, or the leader).
 */
static void
ContextRecomputeTrust(void)
{
	LocalTransactionId lxid = InvalidLocalTransactionId;
	bool		leader = false;
	bool		mixed = false;

	for (int i = 0; i < CF_COUNT; i++)
	{
		if (!authctx_field[i].present)
			continue;
		switch (authctx_field[i].origin)
		{
			case ORIGIN_LEADER:
				leader = true;
				break;
			case ORIGIN_PUBLISHED:
				if (lxid == InvalidLocalTransactionId)
					lxid = authctx_field[i].lxid;
				else if (lxid != authctx_field[i].lxid)
					mixed = true;
				break;
			default:
				mixed = true;	/* a present value nobody published */
				break;
		}
	}
	if (mixed || (leader && lxid != InvalidLocalTransactionId))
	{
		authctx_trust_lxid = InvalidLocalTransactionId;
		authctx_trust_leader = false;
	}
	else
	{
		authctx_trust_lxid = lxid;
		authctx_trust_leader = leader;
	}
}

/* Copy a parsed value into the context struct; refuse foreign changes. */
static void
ContextAssign(ContextField f, const char *newval, void *extra)
{
	ContextExtra *e = (ContextExtra *) extra;
	const char *oldval = authctx_gucs[f].value;
	/* an empty value of no origin: text[] holds just the terminator */
	static union
	{
		ContextExtra e;
		char		bytes[sizeof(ContextExtra) + 1];
	}			absent;

	/*
	 * RESET and set_config(name, NULL) skip the check hook.  Refuse them:
	 * inside a running transaction only our own code changes these values.
	 * Transaction end and subtransaction abort are not TRANS_INPROGRESS.
	 */
	if (!authctx_context_setting && !authctx_defining &&
		!InitializingParallelWorker && IsTransactionState() &&
		oldval != NULL && strcmp(oldval, newval ? newval : "") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("parameter \"%s\" can only be set by auth_begin()",
						authctx_gucs[f].name)));

	authctx_ctx_generation++;
	if (e == NULL)
		e = &absent.e;			/* every extra is ours: cannot happen */
	authctx_field[f].present = e->present;
	authctx_field[f].origin = e->origin;
	authctx_field[f].lxid = e->lxid;
	switch (f)
	{
		case CF_USER_ID:
			authctx_ctx.valid = e->present;
			authctx_ctx.user_id = e->uuid;
			break;
		case CF_TENANT_ID:
			authctx_ctx.has_tenant = e->present;
			authctx_ctx.tenant_id = e->uuid;
			break;
		case CF_ROLE:
			strlcpy(authctx_ctx.role, e->text, NAMEDATALEN);
			break;
		case CF_SESSION_ID:
			authctx_ctx.has_session = e->present;
			authctx_ctx.session_id = e->uuid;
			break;
		case CF_CREDENTIAL:
			strlcpy(authctx_ctx.auth_method, e->method, sizeof(authctx_ctx.auth_method));
			authctx_ctx.expires_at = e->ts;
			/* the extra lives as long as the GUC holds this value */
			authctx_ctx.scopes = e->present && e->text[e->scopes_off] ?
				e->text + e->scopes_off : NULL;
			authctx_ctx.amr = e->present && e->text[e->amr_off] ?
				e->text + e->amr_off : NULL;
			break;
		case CF_ADMIN_BYPASS:
			authctx_bypass = e->present;
			break;
		case CF_CLAIMS:
			authctx_ctx.claims = e->present ? e->text : NULL;
			break;
		default:
			break;
	}
	ContextRecomputeTrust();
}

#define CONTEXT_HOOKS(F, suffix) \
static bool check_##suffix(char **newval, void **extra, GucSource source) \
{ return ContextCheck(F, newval, extra, source); } \
static void assign_##suffix(const char *newval, void *extra) \
{ ContextAssign(F, newval, extra); }

CONTEXT_HOOKS(CF_USER_ID, user_id)
CONTEXT_HOOKS(CF_TENANT_ID, tenant_id)
CONTEXT_HOOKS(CF_ROLE, role)
CONTEXT_HOOKS(CF_SESSION_ID, session_id)
CONTEXT_HOOKS(CF_CREDENTIAL, credential)
CONTEXT_HOOKS(CF_ADMIN_BYPASS, admin_bypass)
CONTEXT_HOOKS(CF_CLAIMS, claims)

static const GucStringCheckHook context_check_hooks[CF_COUNT] = {
	check_user_id, check_tenant_id, check_role, check_session_id,
	check_credential, check_admin_bypass, check_claims
};
static const GucStringAssignHook context_assign_hooks[CF_COUNT] = {
	assign_user_id, assign_tenant_id, assign_role, assign_session_id,
	assign_credential, assign_admin_bypass, assign_claims
};

/* Name of the protected parameter a utility statement would change, if any. */
static const char *
ContextUtilityTarget(Node *parsetree)
{
	VariableSetStmt *set = NULL;

	switch (nodeTag(parsetree))
	{
		case T_VariableSetStmt:
			set = (VariableSetStmt *) parsetree;
			break;
		case T_AlterRoleSetStmt:
			set = ((AlterRoleSetStmt *) parsetree)->setstmt;
			break;
		case T_AlterDatabaseSetStmt:
			set = ((AlterDatabaseSetStmt *) parsetree)->setstmt;
			break;
		case T_AlterSystemStmt:
			set = ((AlterSystemStmt *) parsetree)->setstmt;
			break;
		case T_AlterFunctionStmt:
			{
				ListCell   *lc;

				foreach(lc, ((AlterFunctionStmt *) parsetree)->actions)
				{
					DefElem    *d = lfirst_node(DefElem, lc);

					if (strcmp(d->defname, "set") == 0 &&
						ContextIsProtectedName(((VariableSetStmt *) d->arg)->name))
						return ((VariableSetStmt *) d->arg)->name;
				}
				return NULL;
			}
		default:
			return NULL;
	}
	if (set == NULL || set->kind == VAR_RESET_ALL)
		return NULL;
	return ContextIsProtectedName(set->name) ? set->name : NULL;
}

/* Has our code published a context (or an admin bypass) in this transaction? */
static bool
ContextPublishedThisXact(void)
{
	return authctx_published_lxid != InvalidLocalTransactionId &&
		authctx_published_lxid == AuthctxMyLxid();
}

/* The one refusal of a holdable cursor, at DECLARE or at COMMIT. */
static void
ContextRefuseHeldCursor(const char *name, bool at_commit)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot keep cursor \"%s\" WITH HOLD in a transaction with an authentication context",
					name),
			 at_commit ?
			 errdetail("The cursor was dropped and the transaction rolled back: its rows, read under the context, would have outlived it.") :
			 errdetail("A holdable cursor keeps its rows after COMMIT, when the context is gone, on a connection that a pooler may hand to another client."),
			 errhint("Declare the cursor without WITH HOLD and fetch its rows before the transaction ends.")));
}

/*
 * A holdable cursor's query ends when COMMIT holds it (PersistHoldablePortal
 * runs it to the end with the cursor as ActivePortal): remember its name
 * for the check at pre-commit.  Seen here rather than at DECLARE because,
 * without preloading, the DECLARE can be what loads the library.
 */
static void
ContextExecutorEnd(QueryDesc *queryDesc)
{
	Portal		portal = ActivePortal;

	if (portal != NULL && (portal->cursorOptions & CURSOR_OPT_HOLD) &&
		portal->createSubid != InvalidSubTransactionId &&
		IsTransactionState())
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		authctx_held_cursors = lappend(authctx_held_cursors, pstrdup(portal->name));
		MemoryContextSwitchTo(old);
	}
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/*
 * Pre-commit: the portals are already held, materialised under whatever
 * context the transaction had.  If the transaction published a context,
 * drop every holdable cursor it held and refuse the commit; a held portal
 * would survive the abort that follows, so drop it here.
 */
static void
ContextXactCallback(XactEvent event, void *arg)
{
	ListCell   *lc;
	const char *refused = NULL;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (authctx_held_cursors == NIL || !ContextPublishedThisXact())
				return;
			foreach(lc, authctx_held_cursors)
			{
				const char *name = (const char *) lfirst(lc);
				Portal		portal = GetPortalByName(name);

				if (PortalIsValid(portal) &&
					(portal->cursorOptions & CURSOR_OPT_HOLD) &&
					portal->status != PORTAL_ACTIVE)
				{
					PortalDrop(portal, false);
					refused = name;
				}
			}
			authctx_held_cursors = NIL;
			if (refused != NULL)
				ContextRefuseHeldCursor(refused, true);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			authctx_held_cursors = NIL; /* its memory goes with the transaction */
			break;
		default:
			break;
	}
}

/*
 * Refuse SET/RESET/ALTER ... SET of the context parameters for every role,
 * and holdable cursors in a transaction with a context.
 */
static void
ContextProcessUtility(AUTHCTX_UTILITY_ARGS)
{
	Node	   *parsetree = pstmt->utilityStmt;
	const char *target = ContextUtilityTarget(parsetree);

	if (target != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("parameter \"%s\" can only be set by auth_begin()", target),
				 errhint("Call auth_begin(token) at the start of the transaction.")));
	if (IsA(parsetree, DeclareCursorStmt) &&
		(((DeclareCursorStmt *) parsetree)->options & CURSOR_OPT_HOLD) &&
		ContextPublishedThisXact())
		ContextRefuseHeldCursor(((DeclareCursorStmt *) parsetree)->portalname, false);

	if (prev_ProcessUtility)
		prev_ProcessUtility(AUTHCTX_UTILITY_PASS);
	else
		standard_ProcessUtility(AUTHCTX_UTILITY_PASS);
}

/* Define the context GUCs, missing_context, the utility and commit guards. */
void
ContextInit(void)
{
	authctx_defining = true;
	for (int i = 0; i < CF_COUNT; i++)
		DefineCustomStringVariable(authctx_gucs[i].name,
								   authctx_gucs[i].desc,
								   "Set only by auth_begin(), auth_end() and admin_begin(); read-only for every role.",
								   &authctx_gucs[i].value,
								   "",
								   PGC_USERSET,
								   GUC_NO_RESET_ALL | GUC_NOT_IN_SAMPLE |
								   GUC_DISALLOW_IN_FILE |
								   (authctx_gucs[i].hidden ? GUC_NO_SHOW_ALL : 0),
								   context_check_hooks[i],
								   context_assign_hooks[i],
								   NULL);
	authctx_defining = false;

	DefineCustomEnumVariable("authctx.missing_context",
							 "What a query on an isolated table does without an authentication context.",
							 "deny: no rows, no writes; error: raise SQLSTATE 28000.",
							 &authctx_missing_context,
							 MISSING_CONTEXT_DENY,
							 missing_context_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ContextProcessUtility;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = ContextExecutorEnd;
	RegisterXactCallback(ContextXactCallback, NULL);
}

/*
 * Set one context GUC for this transaction from our own code; staged, if
 * not NULL, is the binary form of value (the check hook then skips parsing).
 */
static void
ContextSet(ContextField f, const char *value, const ContextStaged *staged)
{
	authctx_staged = staged;
	PG_TRY();
	{
		(void) set_config_option(authctx_gucs[f].name, value ? value : "",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, ERROR, false);
	}
	PG_FINALLY();
	{
		authctx_staged = NULL;
	}
	PG_END_TRY();
}

/*
 * Format a uuid as text into buf (AUTHCTX_UUID_TEXT_LEN + 1 bytes), as
 * uuid_out does, without its palloc and StringInfo; "" for NULL.
 */
const char *
ContextUuidText(const pg_uuid_t *u, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	char	   *p = buf;

	if (u == NULL)
		return "";
	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->data[i] >> 4];
		*p++ = hex[u->data[i] & 0x0F];
	}
	*p = '\0';
	return buf;
}

/* Set one uuid field from its binary value (or clear it, u NULL). */
static void
ContextSetUuid(ContextField f, const pg_uuid_t *u)
{
	char		buf[AUTHCTX_UUID_TEXT_LEN + 1];
	ContextStaged staged = {.uuid = u};

	ContextSet(f, ContextUuidText(u, buf), u ? &staged : NULL);
}

/*
 * Set the packed credential field "method;expiry;amr;scopes" (amr
 * newline-separated, without ';': ContextPublish's caller sees to it).
 */
static void
ContextSetCredential(const char *method, TimestampTz expires_at,
					 const char *amr, const char *scopes)
{
	StringInfoData buf;
	ContextStaged staged = {.ts = expires_at, .method = method};

	Assert(strchr(method, ';') == NULL && strlen(method) < sizeof(((ContextExtra *) 0)->method));
	initStringInfo(&buf);
	appendStringInfoString(&buf, method);
	appendStringInfoChar(&buf, ';');
	if (expires_at != DT_NOBEGIN)
	{
		char		num[MAXINT8LEN + 1];

		/* pg_lltoa, not a printf format: this runs on every auth_begin */
		appendBinaryStringInfo(&buf, num, pg_lltoa((int64) expires_at, num));
	}
	appendStringInfoChar(&buf, ';');
	Assert(amr == NULL || strchr(amr, ';') == NULL);
	if (amr)
		appendStringInfoString(&buf, amr);
	appendStringInfoChar(&buf, ';');
	if (scopes)
		appendStringInfoString(&buf, scopes);
	ContextSet(CF_CREDENTIAL, buf.data, &staged);
	pfree(buf.data);
}

/*
 * Publish a validated context for the rest of this transaction.  Only
 * auth_begin (request.c, and jwt.c for its JWTs) calls this; every field is
 * replaced.  amr is newline-separated without ';'; claims is a JWT's
 * verified claims as JSON text, NULL for every other credential.
 */
void
ContextPublish(const pg_uuid_t *user_id, const pg_uuid_t *tenant_id,
			   const char *role, const pg_uuid_t *session_id,
			   const char *auth_method, TimestampTz expires_at,
			   const char *scopes, const char *amr, const char *claims)
{
	authctx_published_lxid = AuthctxMyLxid();
	authctx_context_setting = true;
	PG_TRY();
	{
		ContextSetUuid(CF_USER_ID, user_id);
		ContextSetUuid(CF_TENANT_ID, tenant_id);
		ContextSet(CF_ROLE, role, NULL);
		ContextSetUuid(CF_SESSION_ID, session_id);
		ContextSetCredential(auth_method, expires_at, amr, scopes);
		/* one setting fewer on the session path: claims only when present */
		if ((claims != NULL && claims[0] != '\0') ||
			(authctx_gucs[CF_CLAIMS].value != NULL &&
			 authctx_gucs[CF_CLAIMS].value[0] != '\0'))
			ContextSet(CF_CLAIMS, claims, NULL);
	}
	PG_FINALLY();
	{
		authctx_context_setting = false;
	}
	PG_END_TRY();
}

/* Clear the context (and any admin bypass) inside this transaction. */
void
ContextClear(void)
{
	authctx_context_setting = true;
	PG_TRY();
	{
		for (int i = 0; i < CF_COUNT; i++)
			if (authctx_gucs[i].value != NULL && authctx_gucs[i].value[0] != '\0')
				ContextSet((ContextField) i, "", NULL);
	}
	PG_FINALLY();
	{
		authctx_context_setting = false;
	}
	PG_END_TRY();
}

/* Turn on the admin bypass for this transaction (tenant.c checks rights). */
void
ContextSetAdminBypass(const char *reason)
{
	const AuthctxContext *ctx = ContextCurrent();

	authctx_published_lxid = AuthctxMyLxid();
	authctx_context_setting = true;
	PG_TRY();
	{
		ContextSet(CF_ADMIN_BYPASS, reason, NULL);
		ContextSetCredential("admin", ctx->expires_at, ctx->amr, ctx->scopes);
	}
	PG_FINALLY();
	{
		authctx_context_setting = false;
	}
	PG_END_TRY();
}

/* Is an admin bypass in force (and trusted)? */
bool
ContextAdminBypass(void)
{
	return authctx_bypass && ContextTrusted();
}

/* The context in force, or an empty one when it is not trusted. */
const AuthctxContext *
ContextCurrent(void)
{
	return ContextTrusted() ? &authctx_ctx : &authctx_no_ctx;
}
