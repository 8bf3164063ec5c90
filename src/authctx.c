/*-------------------------------------------------------------------------
 *
 * authctx.c
 *		Library entry point: _PG_init only dispatches to each module.
 *
 * The library works loaded on demand (the first call of any authctx
 * function) and from shared_preload_libraries.  Preloading adds what needs
 * the postmaster: the shared-memory session cache, the cleanup background
 * worker and log redaction from the first statement on.  It changes no
 * result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "authctx.h"

PG_MODULE_MAGIC;

#ifndef AUTHCTX_VERSION
#error "AUTHCTX_VERSION must be defined (the Makefile takes it from authctx.control)"
#endif

/* This backend has seen its database's extension at the library's version. */
static bool authctx_schema_checked = false;

void		_PG_init(void);

/* Define settings and install hooks, module by module. */
void
_PG_init(void)
{
	CryptoInit();
	TokenInit();
	ContextInit();
	IdentityInit();
	SessionInit();
	RedactInit();
	TenantInit();
	WebauthnInit();
	OtpInit();
	WorkerInit();
	CacheInit();

	MarkGUCPrefixReserved("authctx");
}

/*
 * The installed extension's version in this database, palloc'd, or NULL when
 * the extension is not installed.
 */
static char *
InstalledVersion(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("authctx"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Refuse to work on tables laid out for another version of the extension.
 *
 * The shared library is replaced for the whole cluster at once (a package
 * upgrade), while each database moves to the new version only at its own
 * ALTER EXTENSION authctx UPDATE.  Until then the entry points that read
 * the extension's tables directly (without going through its SQL) refuse
 * with a message that says what to do, instead of misreading them.  A
 * match is remembered for the life of the backend; a mismatch is checked
 * again at every call, so the backend works as soon as the update commits.
 * During CREATE/ALTER EXTENSION the catalog already names the version being
 * installed.
 */
void
AuthctxCheckVersion(void)
{
	char	   *installed;

	if (authctx_schema_checked)
		return;
	installed = InstalledVersion();
	if (installed != NULL && strcmp(installed, AUTHCTX_VERSION) == 0)
	{
		authctx_schema_checked = true;
		pfree(installed);
		return;
	}
	if (installed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"authctx\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION authctx.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"authctx\" is at version %s in this database, but its library is version %s",
					installed, AUTHCTX_VERSION),
			 errhint("Run ALTER EXTENSION authctx UPDATE in this database.")));
}
