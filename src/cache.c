/*-------------------------------------------------------------------------
 *
 * cache.c
 *		(stub) the cache module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
CacheInit(void)
{
}
