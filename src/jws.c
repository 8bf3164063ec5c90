/*-------------------------------------------------------------------------
 *
 * jws.c
 *		Compact JWS / JWT parsing and claim checks, in plain C.
 *
 * A token is the compact serialization of RFC 7515: exactly three
 * non-empty segments, header.payload.signature, each canonical base64url
 * without padding (RFC 7515 section 2: no "=", no other alphabet, no
 * whitespace, and the spare bits of the last character zero, so that one
 * token has exactly one spelling).  Tokens over 16 kB are refused before
 * anything is decoded.
 *
 * Header.  A strict JSON object (sjson.c: duplicate names, trailing data,
 * bad strings refused).  "alg" must be one of EdDSA, ES256, RS256 (so
 * "none" and every HS* are refused here, before any key is looked at);
 * "kid", when present, a non-empty string.  "crit" is refused (we
 * understand no extension), and so are "b64" (RFC 7797 unencoded
 * payloads) and "zip" (a JWE parameter) rather than ignored.  Other
 * parameters (typ, cty, jku, x5u, jwk, x5c...) are ignored: keys come
 * from the issuer registry only, never from the token.
 *
 * Claims.  A strict JSON object.  Registered claims are type-checked
 * here, before the signature is verified (the issuer named by "iss"
 * chooses the key), so that nothing later reads a claim of the wrong
 * type: "iss" and "sub" non-empty strings of at most JWT_MAX_NAME_LEN
 * bytes; "aud" such a string or a non-empty array of them; "exp" required;
 * "exp", "nbf", "iat" NumericDates; "scope" a string; "scp" a string or an
 * array of strings; "amr" an array of strings.  A registered claim
 * present with another type (null included) refuses the token.
 *
 * NumericDate (RFC 7519 section 2) is a JSON number of seconds since
 * 1970-01-01T00:00:00Z.  We accept a non-negative integer or decimal
 * ("1700000000", "1700000000.25") up to 253402300799 (the end of year
 * 9999) and refuse negative values, exponents ("1.7e9") and anything
 * larger: real issuers write integers, and a date we would have to guess
 * at is no date.  Fractions are kept to the microsecond, and rounded
 * against the token: "exp" down, "nbf" and "iat" up.
 *
 * Nothing here allocates or depends on PostgreSQL; every failure is a
 * JwtStatus.  The decoded header and payload are kept NUL-terminated in
 * the JwsToken, so that the server can hand the verified claims to jsonb
 * without decoding them again.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "jws.h"
#include "parse.h"

/* Longest base64url text of a JWS_MAX_SIG_LEN-byte signature. */
#define JWS_MAX_SIG_B64		((JWS_MAX_SIG_LEN * 4 + 2) / 3)

/*
 * The cheap shape test, for telling a JWT from other bearer tokens before
 * anything is decoded: at most 16 kB, three non-empty base64url segments.
 */
bool
JwsLooksLikeJwt(const char *s, size_t len)
{
	int			dots = 0;
	size_t		seglen = 0;

	if (len == 0 || len > JWS_MAX_TOKEN_LEN)
		return false;
	/* authctx's own tokens have no dot: one fast scan sends them back */
	if (memchr(s, '.', len) == NULL)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '.')
		{
			if (seglen == 0 || ++dots > 2)
				return false;
			seglen = 0;
		}
		else if (B64urlIsChar(s[i]))
			seglen++;
		else
			return false;
	}
	return dots == 2 && seglen > 0;
}

/*
 * Decode canonical unpadded base64url with the one strict decoder
 * (base64url.c): libsodium alone decodes bytes from 0x80 up as '_', so a
 * JWK member or a segment would have had other spellings.
 */
bool
JwsB64Decode(const char *in, size_t inlen, unsigned char *out, size_t outmax,
			 size_t *outlen)
{
	return B64urlDecode(in, inlen, out, outmax, outlen) == PARSE_OK;
}

/* The JWS "alg" name of an algorithm we verify. */
const char *
JwsAlgName(JwsAlg alg)
{
	switch (alg)
	{
		case JWS_ALG_EDDSA:
			return "EdDSA";
		case JWS_ALG_ES256:
			return "ES256";
		case JWS_ALG_RS256:
			return "RS256";
		case JWS_ALG_UNKNOWN:
			break;
	}
	return "unknown";
}

/* The algorithm named exactly (case-sensitively) by name, or UNKNOWN. */
JwsAlg
JwsAlgFromName(const char *name, size_t len)
{
	if (len == 5 && memcmp(name, "EdDSA", 5) == 0)
		return JWS_ALG_EDDSA;
	if (len == 5 && memcmp(name, "ES256", 5) == 0)
		return JWS_ALG_ES256;
	if (len == 5 && memcmp(name, "RS256", 5) == 0)
		return JWS_ALG_RS256;
	return JWS_ALG_UNKNOWN;
}

/* A name for each status: tests and diagnostics only, never shown to callers. */
const char *
JwtStatusName(JwtStatus status)
{
	switch (status)
	{
		case JWT_OK:
			return "ok";
		case JWT_ERR_LENGTH:
			return "length";
		case JWT_ERR_SHAPE:
			return "shape";
		case JWT_ERR_BASE64:
			return "base64url";
		case JWT_ERR_HEADER_JSON:
			return "header json";
		case JWT_ERR_HEADER:
			return "header";
		case JWT_ERR_ALG:
			return "algorithm";
		case JWT_ERR_CRIT:
			return "crit";
		case JWT_ERR_CLAIMS_JSON:
			return "claims json";
		case JWT_ERR_CLAIM:
			return "claim";
		case JWT_ERR_ISSUER:
			return "issuer";
		case JWT_ERR_KEY:
			return "key";
		case JWT_ERR_SIGNATURE:
			return "signature";
		case JWT_ERR_AUDIENCE:
			return "audience";
		case JWT_ERR_EXPIRED:
			return "expired";
		case JWT_ERR_NOT_YET_VALID:
			return "not yet valid";
		case JWT_ERR_ISSUED_IN_FUTURE:
			return "issued in the future";
		case JWT_ERR_TENANT_CLAIM:
			return "tenant claim";
		case JWT_ERR_ENCODING:
			return "encoding";
	}
	return "unknown";
}

/*
 * Decode one segment and parse it as strict JSON into doc (*st says how
 * that went); json receives the decoded text, NUL-terminated.  False when
 * the segment is not canonical base64url.
 */
static bool
JwsSegmentObject(const char *seg, size_t seglen, char *json, SjsonDoc *doc,
				 SjsonStatus *st)
{
	size_t		n;

	*st = SJSON_OK;
	if (!JwsB64Decode(seg, seglen, (unsigned char *) json, JWS_MAX_PART_LEN, &n))
		return false;
	json[n] = '\0';
	*st = SjsonParse(doc, json, n);
	return true;
}

/* Is node (or -1) a string fit to name an issuer, subject or audience? */
static bool
JwtNameOk(const SjsonDoc *doc, int32_t node)
{
	return node >= 0 && doc->nodes[node].type == SJSON_STRING &&
		doc->nodes[node].slen > 0 && doc->nodes[node].slen <= JWT_MAX_NAME_LEN;
}

/* Is node an array whose elements are all strings (and, if names, names)? */
static bool
JwtStringArray(const SjsonDoc *doc, int32_t node, bool names)
{
	uint32_t	e;

	if (doc->nodes[node].type != SJSON_ARRAY)
		return false;
	e = SjsonFirst((uint32_t) node);
	for (uint32_t i = 0; i < doc->nodes[node].count; i++)
	{
		if (names ? !JwtNameOk(doc, (int32_t) e) :
			doc->nodes[e].type != SJSON_STRING)
			return false;
		e = SjsonNext(doc, e);
	}
	return true;
}

/*
 * Read a NumericDate (see the file header) into microseconds since 1970;
 * round_up says which way a sub-microsecond fraction goes.
 */
static bool
JwtNumericDate(const SjsonDoc *doc, int32_t node, bool round_up, int64_t *us)
{
	const SjsonNode *n;
	const char *s;
	size_t		i = 0;
	int64_t		secs = 0;
	int64_t		frac = 0;
	int			digits = 0;
	bool		rest = false;

	if (node < 0 || doc->nodes[node].type != SJSON_NUMBER)
		return false;
	n = &doc->nodes[node];
	s = doc->text + n->start;
	while (i < n->len && s[i] >= '0' && s[i] <= '9')
	{
		if (i >= 12)
			return false;		/* past 999999999999: too large anyway */
		secs = secs * 10 + (s[i] - '0');
		i++;
	}
	if (i == 0)
		return false;			/* negative */
	if (i < n->len && s[i] == '.')
	{
		for (i++; i < n->len && s[i] >= '0' && s[i] <= '9'; i++)
		{
			if (digits < 6)
			{
				frac = frac * 10 + (s[i] - '0');
				digits++;
			}
			else if (s[i] != '0')
				rest = true;
		}
	}
	if (i != n->len)
		return false;			/* an exponent */
	if (secs > JWT_MAX_NUMERIC_DATE)
		return false;
	for (; digits < 6; digits++)
		frac *= 10;
	*us = secs * 1000000 + frac + (round_up && rest ? 1 : 0);
	return true;
}

/* Read and type-check the header parameters we use or refuse. */
static JwtStatus
JwsReadHeader(JwsToken *t)
{
	const SjsonDoc *h = &t->header;
	int32_t		alg = SjsonGet(h, 0, "alg");
	int32_t		kid = SjsonGet(h, 0, "kid");

	if (alg < 0 || h->nodes[alg].type != SJSON_STRING)
		return JWT_ERR_HEADER;
	t->alg = JwsAlgFromName(SjsonStr(h, (uint32_t) alg), h->nodes[alg].slen);
	if (t->alg == JWS_ALG_UNKNOWN)
		return JWT_ERR_ALG;
	if (SjsonGet(h, 0, "crit") >= 0 || SjsonGet(h, 0, "b64") >= 0 ||
		SjsonGet(h, 0, "zip") >= 0)
		return JWT_ERR_CRIT;
	if (kid >= 0)
	{
		if (!JwtNameOk(h, kid))
			return JWT_ERR_HEADER;
		t->has_kid = true;
		t->kid = SjsonStr(h, (uint32_t) kid);
		t->kid_len = h->nodes[kid].slen;
	}
	return JWT_OK;
}

/* Read and type-check the registered claims (see the file header). */
static JwtStatus
JwtReadClaims(JwsToken *t)
{
	const SjsonDoc *d = &t->claims;
	JwtClaims  *c = &t->c;
	int32_t		node;

	c->iss = SjsonGet(d, 0, "iss");
	c->sub = SjsonGet(d, 0, "sub");
	c->aud = SjsonGet(d, 0, "aud");
	c->scope = SjsonGet(d, 0, "scope");
	c->scp = SjsonGet(d, 0, "scp");
	c->amr = SjsonGet(d, 0, "amr");
	if (!JwtNameOk(d, c->iss) || !JwtNameOk(d, c->sub))
		return JWT_ERR_CLAIM;
	if (c->aud < 0 ||
		!(JwtNameOk(d, c->aud) ||
		  (JwtStringArray(d, c->aud, true) && d->nodes[c->aud].count > 0)))
		return JWT_ERR_CLAIM;
	if (!JwtNumericDate(d, SjsonGet(d, 0, "exp"), false, &c->exp))
		return JWT_ERR_CLAIM;
	if ((node = SjsonGet(d, 0, "nbf")) >= 0)
	{
		if (!JwtNumericDate(d, node, true, &c->nbf))
			return JWT_ERR_CLAIM;
		c->has_nbf = true;
	}
	if ((node = SjsonGet(d, 0, "iat")) >= 0)
	{
		if (!JwtNumericDate(d, node, true, &c->iat))
			return JWT_ERR_CLAIM;
		c->has_iat = true;
	}
	if (c->scope >= 0 && d->nodes[c->scope].type != SJSON_STRING)
		return JWT_ERR_CLAIM;
	if (c->scp >= 0 && d->nodes[c->scp].type != SJSON_STRING &&
		!JwtStringArray(d, c->scp, false))
		return JWT_ERR_CLAIM;
	if (c->amr >= 0 && !JwtStringArray(d, c->amr, false))
		return JWT_ERR_CLAIM;
	return JWT_OK;
}

/*
 * Parse a compact JWS into t: segments, header, claims and signature, with
 * every structural and type check above.  The signature is not verified
 * here, nor are the claims' values judged (see JwtAudienceHas and
 * JwtCheckTimes).
 */
JwtStatus
JwsParse(const char *token, size_t len, JwsToken *t)
{
	const char *dot1;
	const char *dot2;
	size_t		hlen,
				plen,
				slen;
	SjsonStatus st;
	JwtStatus	status;

	t->alg = JWS_ALG_UNKNOWN;
	t->has_kid = false;
	t->kid = NULL;
	t->kid_len = 0;
	t->signing_input = NULL;
	t->signing_input_len = 0;
	t->siglen = 0;
	t->json_status = SJSON_OK;
	memset(&t->c, 0, sizeof(t->c));
	SjsonInit(&t->header, t->header_nodes, JWS_HEADER_NODES,
			  t->header_scratch, sizeof(t->header_scratch), JWS_HEADER_DEPTH);
	SjsonInit(&t->claims, t->claims_nodes, JWS_CLAIMS_NODES,
			  t->claims_scratch, sizeof(t->claims_scratch), JWS_CLAIMS_DEPTH);

	if (len == 0 || len > JWS_MAX_TOKEN_LEN)
		return JWT_ERR_LENGTH;
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return JWT_ERR_SHAPE;
	dot2 = memchr(dot1 + 1, '.', (size_t) (token + len - (dot1 + 1)));
	if (dot2 == NULL ||
		memchr(dot2 + 1, '.', (size_t) (token + len - (dot2 + 1))) != NULL)
		return JWT_ERR_SHAPE;
	hlen = (size_t) (dot1 - token);
	plen = (size_t) (dot2 - dot1 - 1);
	slen = (size_t) (token + len - dot2 - 1);
	if (hlen == 0 || plen == 0 || slen == 0)
		return JWT_ERR_SHAPE;

	if (!JwsSegmentObject(token, hlen, t->header_json, &t->header, &st))
		return JWT_ERR_BASE64;
	t->json_status = st;
	if (st != SJSON_OK || t->header.nodes[0].type != SJSON_OBJECT)
		return JWT_ERR_HEADER_JSON;
	if ((status = JwsReadHeader(t)) != JWT_OK)
		return status;

	if (!JwsSegmentObject(dot1 + 1, plen, t->claims_json, &t->claims, &st))
		return JWT_ERR_BASE64;
	t->json_status = st;
	if (st != SJSON_OK || t->claims.nodes[0].type != SJSON_OBJECT)
		return JWT_ERR_CLAIMS_JSON;

	if (slen > JWS_MAX_SIG_B64)
		return JWT_ERR_SIGNATURE;
	if (!JwsB64Decode(dot2 + 1, slen, t->sig, sizeof(t->sig), &t->siglen))
		return JWT_ERR_BASE64;
	t->signing_input = token;
	t->signing_input_len = (size_t) (dot2 - token);

	return JwtReadClaims(t);
}

/* Does the token's aud (a string or an array) contain audience exactly? */
bool
JwtAudienceHas(const JwsToken *t, const char *audience, size_t len)
{
	const SjsonDoc *d = &t->claims;
	int32_t		aud = t->c.aud;
	uint32_t	e;

	if (aud < 0)
		return false;
	if (d->nodes[aud].type == SJSON_STRING)
		return SjsonStrEq(d, (uint32_t) aud, audience, len);
	if (d->nodes[aud].type != SJSON_ARRAY)
		return false;
	e = SjsonFirst((uint32_t) aud);
	for (uint32_t i = 0; i < d->nodes[aud].count; i++)
	{
		if (SjsonStrEq(d, e, audience, len))
			return true;
		e = SjsonNext(d, e);
	}
	return false;
}

/*
 * Judge exp, nbf and iat against now (microseconds since 1970), each with
 * leeway: valid while now < exp + leeway, once nbf - leeway <= now, and
 * when iat - leeway <= now.
 */
JwtStatus
JwtCheckTimes(const JwsToken *t, int64_t now_us, int64_t leeway_us)
{
	if (leeway_us < 0)
		leeway_us = 0;
	if (now_us >= t->c.exp + leeway_us)
		return JWT_ERR_EXPIRED;
	if (t->c.has_nbf && t->c.nbf - leeway_us > now_us)
		return JWT_ERR_NOT_YET_VALID;
	if (t->c.has_iat && t->c.iat - leeway_us > now_us)
		return JWT_ERR_ISSUED_IN_FUTURE;
	return JWT_OK;
}
