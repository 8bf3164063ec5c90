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

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "authctx.h"

PG_MODULE_MAGIC;

/* True when loaded from shared_preload_libraries. */
bool		authctx_preloaded = false;

void		_PG_init(void);

/* Define settings and install hooks, module by module. */
void
_PG_init(void)
{
	authctx_preloaded = process_shared_preload_libraries_in_progress;

	CryptoInit();
	TokenInit();
	ContextInit();
	IdentityInit();
	SessionInit();
	RequestInit();
	RedactInit();
	TenantInit();
	AuditInit();
	WebauthnInit();
	WorkerInit();
	CacheInit();

	MarkGUCPrefixReserved("authctx");
}
