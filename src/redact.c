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
 * Passwords have no shape to find, so a statement that passes one to authctx
 * is hidden instead: its STATEMENT line is suppressed (a failed login's
 * 28P01 would otherwise log "SELECT authctx.login('a@b', 'the password')",
 * as clients that interpolate parameters send it), and a LOG line quoting
 * it (log_statement, log_min_duration_statement) or its bind parameters
 * loses them.  Such a statement is known by its text (it calls login,
 * set_password or verify_password), by the error's context (raised inside
 * one of them) or because a password function of identity.c ran during it
 * (RedactNoteSecret).  An application's own function that passes a
 * password on is seen by the last two only: after it called one of ours.
 *
 * The hook is installed whenever the library is loaded; it covers every
 * statement from the first one only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "authctx.h"

static emit_log_hook_type prev_emit_log_hook = NULL;
static bool redact_in_hook = false;

/* The start of the statement during which a password function last ran. */
static bool redact_secret_noted = false;
static TimestampTz redact_secret_stmt = 0;

/* The functions whose arguments carry a password. */
static const char *const redact_secret_functions[] = {
	"login", "set_password", "verify_password"
};

/*
 * Does the statement text call one of them: the name, not preceded by an
 * identifier character, then optionally a closing quote, blanks and "("?
 */
static bool
RedactCallsSecretFunction(const char *q)
{
	for (const char *p = q; *p; p++)
	{
		if (p > q && (isalnum((unsigned char) p[-1]) || p[-1] == '_' || p[-1] == '$'))
			continue;
		for (int i = 0; i < lengthof(redact_secret_functions); i++)
		{
			size_t		n = strlen(redact_secret_functions[i]);
			const char *e = p + n;

			if (pg_strncasecmp(p, redact_secret_functions[i], n) != 0)
				continue;
			if (*e == '"')
				e++;
			while (*e == ' ' || *e == '\t' || *e == '\n' || *e == '\r')
				e++;
			if (*e == '(')
				return true;
		}
	}
	return false;
}

static const char redact_hidden[] = "(hidden: the statement passed a password to authctx)";

/*
 * Called by the password functions: the current statement carries a
 * password, so it must not reach the log.
 */
void
RedactNoteSecret(void)
{
	redact_secret_noted = true;
	redact_secret_stmt = GetCurrentStatementStartTimestamp();
}

/* Does the statement being reported on carry a password? */
static bool
RedactSecretStatement(const ErrorData *edata)
{
	if (redact_secret_noted &&
		redact_secret_stmt == GetCurrentStatementStartTimestamp())
		return true;
	if (edata->context != NULL)
		for (int i = 0; i < lengthof(redact_secret_functions); i++)
		{
			char		line[64];

			snprintf(line, sizeof(line), "function authctx.%s(", redact_secret_functions[i]);
			if (strstr(edata->context, line) != NULL)
				return true;
		}
	return RedactCallsSecretFunction(debug_query_string);
}

/*
 * Hide a statement that carries a password: no STATEMENT line, and no copy
 * of its text or of its bind parameters in the message, detail or context.
 */
static void
RedactHideSecretStatement(ErrorData *edata)
{
	const char *q = debug_query_string;

	if (!edata->hide_stmt)
	{
		edata->hide_stmt = true;
		if (edata->elevel >= log_min_error_statement)
		{
			const char *d = edata->detail_log ? edata->detail_log : edata->detail;

			edata->detail_log = d ?
				psprintf("%s\nstatement not logged: it passed a password to authctx", d) :
				pstrdup("statement not logged: it passed a password to authctx");
		}
	}
	if (edata->message != NULL && q[0] != '\0' && strstr(edata->message, q) != NULL)
	{
		const char *at = strstr(edata->message, q);

		edata->message = psprintf("%.*s%s%s", (int) (at - edata->message), edata->message,
								  redact_hidden, at + strlen(q));
	}
	if (edata->detail != NULL && strncmp(edata->detail, "parameters: ", 12) == 0)
		edata->detail = psprintf("parameters: %s", redact_hidden);
	if (edata->context != NULL && strstr(edata->context, "with parameters: ") != NULL)
		edata->context = pstrdup(redact_hidden);
}

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
			if (debug_query_string != NULL && RedactSecretStatement(edata))
				RedactHideSecretStatement(edata);
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
