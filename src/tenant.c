/*-------------------------------------------------------------------------
 *
 * tenant.c
 *		(stub) the tenant module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
TenantInit(void)
{
}
