/*-------------------------------------------------------------------------
 *
 * redact_scan.c
 *		The log redaction scanner, without PostgreSQL.
 *
 * redact.c's emit_log_hook hands every string about to be logged to this
 * scanner.  Anything shaped like an authctx token (a token prefix, as
 * token_parse.c knows them, then at least 16 base64url characters, so
 * truncated tokens are hidden too) is replaced by its prefix and
 * "[REDACTED]".  Matches are found
 * leftmost first and do not overlap; the body of a match runs as far as
 * base64url characters go.  A replacement is never longer than what it
 * replaces (20 characters or more become 14), so the scrubbed copy fits in
 * a buffer the size of the input, and it contains nothing token-shaped.
 *
 * Strings are NUL-terminated (they are ErrorData fields); nothing past the
 * terminator is read.  Work is linear in the length of the input.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "parse.h"

#define REDACT_PREFIX_LEN	4
#define REDACT_MIN_BODY		16
#define REDACT_MARK			"[REDACTED]"

/* Length of the token-shaped run at s (0 if none). */
static size_t
RedactMatch(const char *s)
{
	size_t		n = 0;

	/* stops at the terminator before reading past it */
	if (TokenKindOfPrefix(s) == 0)
		return 0;
	while (B64urlIsChar(s[REDACT_PREFIX_LEN + n]))
		n++;
	return n >= REDACT_MIN_BODY ? REDACT_PREFIX_LEN + n : 0;
}

/*
 * The first token-shaped run in str, with its length in *matchlen; NULL
 * (and 0) when there is none.
 */
const char *
RedactFind(const char *str, size_t *matchlen)
{
	*matchlen = 0;
	if (str == NULL)
		return NULL;
	for (const char *p = strchr(str, 'a'); p != NULL; p = strchr(p + 1, 'a'))
	{
		size_t		n = RedactMatch(p);

		if (n > 0)
		{
			*matchlen = n;
			return p;
		}
	}
	return NULL;
}

/*
 * Write into out (room for strlen(str) + 1 bytes) a copy of str with every
 * token-shaped run replaced; returns the length of the copy.
 */
size_t
RedactScrub(const char *str, char *out)
{
	const char *p = str;
	const char *m;
	size_t		n;
	size_t		len = 0;

	while ((m = RedactFind(p, &n)) != NULL)
	{
		memcpy(out + len, p, m - p);
		len += m - p;
		memcpy(out + len, m, REDACT_PREFIX_LEN);
		len += REDACT_PREFIX_LEN;
		memcpy(out + len, REDACT_MARK, sizeof(REDACT_MARK) - 1);
		len += sizeof(REDACT_MARK) - 1;
		p = m + n;
	}
	n = strlen(p);
	memcpy(out + len, p, n + 1);
	return len + n;
}
