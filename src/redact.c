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
 * of the statement to detail_log (server log only) instead.
 *
 * The hook is installed whenever the library is loaded; it covers every
 * statement from the first one only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "authctx.h"

#define REDACT_MIN_BODY 16

static emit_log_hook_type prev_emit_log_hook = NULL;
static bool redact_in_hook = false;

static inline bool
RedactIsBodyChar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Length of the token-shaped run at s (0 if none). */
static size_t
RedactMatch(const char *s)
{
	size_t		n = 0;

	if (s[0] != 'a' || s[1] != 'x' || (s[2] != 's' && s[2] != 'r' && s[2] != 'k') ||
		s[3] != '_')
		return 0;
	while (RedactIsBodyChar(s[4 + n]))
		n++;
	return n >= REDACT_MIN_BODY ? 4 + n : 0;
}

/* Does str contain anything shaped like a token? */
static bool
RedactNeeded(const char *str)
{
	if (str == NULL)
		return false;
	for (const char *p = strstr(str, "ax"); p != NULL; p = strstr(p + 1, "ax"))
		if (RedactMatch(p) > 0)
			return true;
	return false;
}

/* A copy of str with every token replaced (in the current memory context). */
static char *
RedactString(const char *str)
{
	StringInfoData buf;
	const char *p = str;

	initStringInfo(&buf);
	while (*p)
	{
		size_t		n = (p[0] == 'a') ? RedactMatch(p) : 0;

		if (n > 0)
		{
			appendBinaryStringInfo(&buf, p, 4);
			appendStringInfoString(&buf, "[REDACTED]");
			p += n;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
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
