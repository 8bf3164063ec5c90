/*-------------------------------------------------------------------------
 *
 * audit.c
 *		(stub) the audit module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
AuditInit(void)
{
}
