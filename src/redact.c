/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Keep bearer tokens out of the server log.
 *
 * A token reaches the log in the statement text (log_statement,
 * log_min_duration_statement, and the STATEMENT line log_min_error_statement
 * appends to errors), in bind parameters (the "parameters: $1 = '...'"
 * DETAIL) and in error messages (a token pasted where a uuid belongs).
 * emit_log_hook sees every ErrorData before it is written: we rewrite
 * message, detail, hint, context and internal query, replacing anything
 * shaped like an authctx token (prefix axs_/axr_/axk_ then at least 16
 * base64url characters, so truncated tokens are hidden too) with
 * "ax?_[REDACTED]".  When the current statement itself holds a token, we set
 * hide_stmt, which suppresses the STATEMENT line, and append a redacted copy
 * of the statement to detail_log (server log only) instead.  The scanner
 * itself is plain C in redact_scan.c (fuzzed on its own by test/fuzz).
 *
 * The hook is installed whenever the library is loaded; it covers every
 * statement from the first one only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "authctx.h"

static emit_log_hook_type prev_emit_log_hook = NULL;
static bool redact_in_hook = false;

/* Does str contain anything shaped like a token? */
static bool
RedactNeeded(const char *str)
{
	size_t		n;

	return RedactFind(str, &n) != NULL;
}

/* A copy of str with every token replaced (in the current memory context). */
static char *
RedactString(const char *str)
{
	char	   *out = palloc(strlen(str) + 1);

	RedactScrub(str, out);
	return out;
}

#define REDACT_FIELD(f) \
	do { if (RedactNeeded(f)) (f) = RedactString(f); } while (0)

/* emit_log_hook: scrub tokens from everything about to be logged. */
static void
RedactEmitLog(ErrorData *edata)
{
	if (!redact_in_hook)
	{
		redact_in_hook = true;
		PG_TRY();
		{
			REDACT_FIELD(edata->message);
			REDACT_FIELD(edata->detail);
			REDACT_FIELD(edata->detail_log);
			REDACT_FIELD(edata->hint);
			REDACT_FIELD(edata->context);
			REDACT_FIELD(edata->internalquery);
			if (!edata->hide_stmt && RedactNeeded(debug_query_string))
			{
				char	   *stmt = RedactString(debug_query_string);

				edata->hide_stmt = true;
				/* detail_log reaches the server log only, not the client */
				if (edata->elevel >= log_min_error_statement)
				{
					const char *d = edata->detail_log ? edata->detail_log : edata->detail;

					edata->detail_log = d ?
						psprintf("%s\nstatement (redacted): %s", d, stmt) :
						psprintf("statement (redacted): %s", stmt);
				}
			}
		}
		PG_FINALLY();
		{
			redact_in_hook = false;
		}
		PG_END_TRY();
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Install the log hook. */
void
RedactInit(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = RedactEmitLog;
}
