/*-------------------------------------------------------------------------
 *
 * redact_scan.c
 *		The log redaction scanner, without PostgreSQL.
 *
 * redact.c's emit_log_hook hands every string about to be logged to this
 * scanner.  Anything shaped like an authctx token (a token prefix, as
 * token_parse.c knows them, then at least 16 base64url characters, so
 * truncated tokens are hidden too) is replaced by its prefix and
 * "[REDACTED]".  So is anything shaped like a JWT, or the start of one:
 * "eyJ" (the base64url of '{"', how every JWS header begins) and at least
 * 13 more base64url characters, then a '.'; its body runs as far as
 * base64url characters and dots go, so the claims and signature segments
 * go too, and it becomes "eyJ[REDACTED]".  Matches are found
 * leftmost first and do not overlap; the body of a match runs as far as
 * base64url characters go.  A replacement is never longer than what it
 * replaces (20 characters or more become 14; 17 or more become 13), so the
 * scrubbed copy fits in a buffer the size of the input, and it contains
 * nothing token-shaped.
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
#define REDACT_JWT_PREFIX	"eyJ"
#define REDACT_JWT_PREFIX_LEN	3
#define REDACT_JWT_MIN_HEAD	16	/* "eyJ" and 13 more, before the first dot */

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

/* Length of the JWT-shaped run at s (0 if none). */
static size_t
RedactJwtMatch(const char *s)
{
	size_t		n = REDACT_JWT_PREFIX_LEN;

	/* stops at the terminator before reading past it */
	if (strncmp(s, REDACT_JWT_PREFIX, REDACT_JWT_PREFIX_LEN) != 0)
		return 0;
	while (B64urlIsChar(s[n]))
		n++;
	if (n < REDACT_JWT_MIN_HEAD || s[n] != '.')
		return 0;
	while (B64urlIsChar(s[n]) || s[n] == '.')
		n++;
	return n;
}

/*
 * The first token- or JWT-shaped run in str, with its length in *matchlen
 * and the length of the prefix that stays in *keep; NULL (and 0) when
 * there is none.
 */
static const char *
RedactFindKeep(const char *str, size_t *matchlen, size_t *keep)
{
	*matchlen = 0;
	*keep = 0;
	if (str == NULL)
		return NULL;
	for (const char *p = str; *p; p++)
	{
		size_t		n = 0;

		if (*p == 'a' && (n = RedactMatch(p)) > 0)
			*keep = REDACT_PREFIX_LEN;
		else if (*p == 'e' && (n = RedactJwtMatch(p)) > 0)
			*keep = REDACT_JWT_PREFIX_LEN;
		if (n > 0)
		{
			*matchlen = n;
			return p;
		}
	}
	return NULL;
}

/*
 * The first token- or JWT-shaped run in str, with its length in *matchlen;
 * NULL (and 0) when there is none.
 */
const char *
RedactFind(const char *str, size_t *matchlen)
{
	size_t		keep;

	return RedactFindKeep(str, matchlen, &keep);
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
	size_t		keep;
	size_t		len = 0;

	while ((m = RedactFindKeep(p, &n, &keep)) != NULL)
	{
		memcpy(out + len, p, m - p);
		len += m - p;
		memcpy(out + len, m, keep);
		len += keep;
		memcpy(out + len, REDACT_MARK, sizeof(REDACT_MARK) - 1);
		len += sizeof(REDACT_MARK) - 1;
		p = m + n;
	}
	n = strlen(p);
	memcpy(out + len, p, n + 1);
	return len + n;
}
