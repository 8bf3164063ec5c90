/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit module's C side: events that must outlive the transaction.
 *
 * authctx.audit_log is written by authctx._audit() (src/sql), in the
 * caller's transaction.  An event that must survive a rollback of that
 * transaction (admin_bypass: the bypass is refused unless it is recorded)
 * goes through AuditWriteDurable(), which hands it to the task runner
 * (worker.c) to be written, by the same _audit(), in a transaction of its
 * own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/*
 * Write one audit event (a JSON object: event, db_role, user_id,
 * tenant_id, session_id, detail) in a transaction of its own, and wait for
 * it to commit.  false when it could not be written: the caller refuses
 * what it was about to allow (fail closed).
 */
bool
AuditWriteDurable(const char *event_json)
{
	return WorkerRunAutonomous("audit", event_json, NULL);
}
