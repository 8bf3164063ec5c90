/*-------------------------------------------------------------------------
 *
 * worker.c
 *		(stub) the worker module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
WorkerInit(void)
{
}

bool
WorkerRunAutonomous(const char *kind, const char *payload_json)
{
	return false;
}

void
WorkerNoteSeen(char kind, const pg_uuid_t *id, TimestampTz when)
{
}
