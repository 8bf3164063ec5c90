/*-------------------------------------------------------------------------
 *
 * request.c
 *		(stub) the request module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
RequestInit(void)
{
}
