/*
 * redact: the log redaction scanner (emit_log_hook, every message, detail,
 * hint, context, internal query and statement about to be logged).
 *
 * Input: the text (up to its first NUL, as ErrorData fields are strings).
 * The scrubbed copy goes into a buffer of exactly strlen + 1 bytes.
 * Properties: the copy is no longer than the input, holds nothing
 * token- or JWT-shaped, equals the input when nothing was found, and every
 * replacement keeps its prefix (a token's, or a JWT's "eyJ") and says
 * "[REDACTED]".
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *in = FuzzString(data, size);
	size_t		len = strlen(in);
	char	   *out = malloc(len + 1);
	size_t		outlen;
	size_t		n;
	const char *first;

	FUZZ_CHECK(out != NULL);
	first = RedactFind(in, &n);
	outlen = RedactScrub(in, out);
	FUZZ_CHECK(outlen == strlen(out));
	FUZZ_CHECK(outlen <= len);
	FUZZ_CHECK(RedactFind(out, &n) == NULL && n == 0);
	if (first == NULL)
		FUZZ_CHECK(outlen == len && memcmp(in, out, len) == 0);
	else
	{
		size_t		at = first - in;
		size_t		keep = in[at] == 'e' ? 3 : 4;	/* "eyJ" of a JWT, a token's prefix */

		FUZZ_CHECK(outlen < len);
		FUZZ_CHECK(memcmp(out, in, at + keep) == 0);
		FUZZ_CHECK(memcmp(out + at + keep, "[REDACTED]", 10) == 0);
	}
	free(in);
	free(out);
	return 0;
}
