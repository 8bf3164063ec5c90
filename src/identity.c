/*-------------------------------------------------------------------------
 *
 * identity.c
 *		(stub) the identity module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
IdentityInit(void)
{
}
