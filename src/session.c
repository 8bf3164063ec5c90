/*-------------------------------------------------------------------------
 *
 * session.c
 *		(stub) the session module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
SessionInit(void)
{
}
