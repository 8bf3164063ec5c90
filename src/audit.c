/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit module's C side: events that must outlive the transaction.
 *
 * Every audit event, SQL or C, is written by authctx._audit()
 * (src/sql/20_audit.sql), which holds the one statement that inserts into
 * authctx.audit_log.  SQL functions call it in their caller's transaction.
 * C code writes an event through this file only: an event that must
 * survive a rollback of the caller's transaction (admin_bypass: the bypass
 * is refused unless it is recorded) goes through AuditWriteDurable(),
 * which builds the record and hands it to the task runner (worker.c, kind
 * audit) to be written by authctx._audit_record(), and so by the same
 * _audit(), in a transaction of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/json.h"

#include "authctx.h"

/* Append ", "name": "uuid"" to a record when the id is given. */
static void
audit_append_uuid(StringInfo buf, const char *name, const pg_uuid_t *id)
{
	char		text[AUTHCTX_UUID_TEXT_LEN + 1];

	if (id == NULL)
		return;
	appendStringInfo(buf, ", \"%s\": \"%s\"", name, ContextUuidText(id, text));
}

/*
 * Write one audit event in a transaction of its own, and wait for it to
 * commit, so that a decision that must be on record is: the event's name,
 * the user, tenant and session it concerns (each NULL when none) and its
 * detail, a JSON object (NULL for none).  The role recorded is the session
 * user's.  false when it could not be written: the caller refuses what it
 * was about to allow (fail closed).
 */
bool
AuditWriteDurable(const char *event, const pg_uuid_t *user_id,
				  const pg_uuid_t *tenant_id, const pg_uuid_t *session_id,
				  const char *detail_json)
{
	StringInfoData record;

	initStringInfo(&record);
	appendStringInfoString(&record, "{\"event\": ");
	escape_json(&record, event);
	appendStringInfoString(&record, ", \"db_role\": ");
	escape_json(&record, GetUserNameFromId(GetSessionUserId(), false));
	audit_append_uuid(&record, "user_id", user_id);
	audit_append_uuid(&record, "session_id", session_id);
	audit_append_uuid(&record, "tenant_id", tenant_id);
	appendStringInfo(&record, ", \"detail\": %s}",
					 detail_json != NULL ? detail_json : "{}");

	return WorkerRunAutonomous("audit", record.data, NULL);
}
