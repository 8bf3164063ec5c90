/*-------------------------------------------------------------------------
 *
 * token.c
 *		The authctx.token base type: parse, format, checksum, verifier.
 *
 * A token is the split "selector/validator" pattern with a GitHub-style
 * prefix and checksum:
 *
 *		axs_<base64url(id[16] || secret[32] || check[4])>
 *
 * The prefix names the kind (axs_ session, axr_ refresh, axk_ API key,
 * axo_ one-time: email links and invitations, src/otp.c); the 16-byte id is
 * the public lookup key (a uuid: the session, refresh token, key or
 * one-time token id); the 32-byte secret comes from libsodium's CSPRNG; the 4-byte
 * check is the head of BLAKE2b(prefix || id || secret), so a mistyped or
 * truncated token is rejected before any table is read.  The text form is
 * always 74 characters from [A-Za-z0-9_-], which secret scanners can match.
 *
 * Only the verifier, BLAKE2b-256(kind || id || secret) keyed with the
 * optional authctx.token_pepper, is ever stored; comparison is constant
 * time (CryptoEqual).  The secret has 256 bits of entropy, so a fast hash
 * is the right tool: there is nothing to brute-force.
 *
 * Error messages never contain the input: a token in a log line is a leak.
 *
 * The decoding and encoding of both forms is plain C in token_parse.c
 * (fuzzed on its own by test/fuzz); this file holds the SQL-callable
 * functions and the verifier.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "authctx.h"

/* authctx.token_pepper: optional key for the stored verifiers. */
char	   *authctx_token_pepper = NULL;

PG_FUNCTION_INFO_V1(authctx_token_in);
PG_FUNCTION_INFO_V1(authctx_token_out);
PG_FUNCTION_INFO_V1(authctx_token_recv);
PG_FUNCTION_INFO_V1(authctx_token_send);
PG_FUNCTION_INFO_V1(authctx_token_new);
PG_FUNCTION_INFO_V1(authctx_token_id);
PG_FUNCTION_INFO_V1(authctx_token_kind);
PG_FUNCTION_INFO_V1(authctx_token_verifier);

/* Define the token settings. */
void
TokenInit(void)
{
	DefineCustomStringVariable("authctx.token_pepper",
							   "Secret key mixed into every stored token verifier.",
							   "Changing it invalidates every issued token.  Set it in postgresql.conf.",
							   &authctx_token_pepper,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/*
 * Parse a token's text form without raising (auth_begin must not); false
 * for anything that is not a well-formed token with a correct checksum.
 */
bool
TokenParse(const char *str, size_t len, AuthctxToken *out)
{
	CryptoInit();
	return TokenDecodeText(str, len, out) == PARSE_OK;
}

/*
 * BLAKE2b-256 of in, keyed with the pepper when one is set: the one hash of
 * every verifier stored for a bearer secret (tokens here, TOTP recovery
 * codes in otp.c), so that the pepper covers them all.
 */
void
TokenKeyedHash(const void *in, size_t inlen, unsigned char *out)
{
	static char *cached_pepper = NULL;
	static unsigned char key[32];
	static size_t keylen = 0;

	if (authctx_token_pepper == NULL || authctx_token_pepper[0] == '\0')
		keylen = 0;
	else if (cached_pepper == NULL || strcmp(cached_pepper, authctx_token_pepper) != 0)
	{
		if (cached_pepper)
			free(cached_pepper);
		cached_pepper = strdup(authctx_token_pepper);
		if (cached_pepper == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
							errmsg("out of memory")));
		CryptoHash(key, sizeof(key), authctx_token_pepper,
				   strlen(authctx_token_pepper), NULL, 0);
		keylen = sizeof(key);
	}
	else
		keylen = sizeof(key);

	CryptoHash(out, AUTHCTX_TOKEN_HASH_LEN, in, inlen,
			   keylen ? key : NULL, keylen);
}

/*
 * The stored verifier: BLAKE2b-256(kind || id || secret), keyed with the
 * pepper when one is set.  Binding the id means a verifier cannot be copied
 * onto another row.
 */
void
TokenVerifier(const AuthctxToken *tok, unsigned char *out)
{
	TokenKeyedHash(tok, AUTHCTX_TOKEN_SIZE, out);
}

/* Wipe a parsed token (its secret) once it is no longer needed. */
void
TokenForget(AuthctxToken *tok)
{
	CryptoZero(tok, sizeof(*tok));
}

/* Text input; bad input is 22P02 and the message never echoes it. */
Datum
authctx_token_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	AuthctxToken *tok = palloc(AUTHCTX_TOKEN_SIZE);

	if (!TokenParse(str, strlen(str), tok))
		authctx_ereturn(fcinfo->context, (Datum) 0,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid input syntax for type authctx.token"),
						 errdetail("A token is a kind prefix (axs_, axr_, axk_ or axo_) followed by 70 characters with a valid checksum.")));
	PG_RETURN_POINTER(tok);
}

/* Text output. */
Datum
authctx_token_out(PG_FUNCTION_ARGS)
{
	char	   *result = palloc(AUTHCTX_TOKEN_TEXT_LEN + 1);

	CryptoInit();
	if (!TokenEncodeText(PG_GETARG_AUTHCTX_TOKEN(0), result))
		elog(ERROR, "authctx.token of unknown kind");
	PG_RETURN_CSTRING(result);
}

/* Binary input: kind byte, id, secret (no checksum: length and kind are checked). */
Datum
authctx_token_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	AuthctxToken *tok = palloc(AUTHCTX_TOKEN_SIZE);

	if (TokenDecodeBinary((const unsigned char *) buf->data + buf->cursor,
						  buf->len - buf->cursor, tok) != PARSE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary representation for type authctx.token")));
	buf->cursor = buf->len;
	PG_RETURN_POINTER(tok);
}

/* Binary output. */
Datum
authctx_token_send(PG_FUNCTION_ARGS)
{
	AuthctxToken *tok = PG_GETARG_AUTHCTX_TOKEN(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, (char *) tok, AUTHCTX_TOKEN_SIZE);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* A fresh token of the named kind ('session', 'refresh', 'api_key' or 'one_time'). */
Datum
authctx_token_new(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	AuthctxToken *tok = palloc(AUTHCTX_TOKEN_SIZE);

	if (strcmp(kind, "session") == 0)
		tok->kind = TOKEN_SESSION;
	else if (strcmp(kind, "refresh") == 0)
		tok->kind = TOKEN_REFRESH;
	else if (strcmp(kind, "api_key") == 0)
		tok->kind = TOKEN_API_KEY;
	else if (strcmp(kind, "one_time") == 0)
		tok->kind = TOKEN_ONE_TIME;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown token kind \"%s\"", kind)));

	CryptoRandomBytes(tok->id, AUTHCTX_TOKEN_ID_LEN);
	/* make the id a well-formed version 4 uuid */
	tok->id[6] = (tok->id[6] & 0x0f) | 0x40;
	tok->id[8] = (tok->id[8] & 0x3f) | 0x80;
	CryptoRandomBytes(tok->secret, AUTHCTX_TOKEN_SECRET_LEN);
	PG_RETURN_POINTER(tok);
}

/* The public id of a token, as a uuid. */
Datum
authctx_token_id(PG_FUNCTION_ARGS)
{
	AuthctxToken *tok = PG_GETARG_AUTHCTX_TOKEN(0);
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

	memcpy(id->data, tok->id, UUID_LEN);
	PG_RETURN_UUID_P(id);
}

/* The kind of a token: session, refresh, api_key or one_time. */
Datum
authctx_token_kind(PG_FUNCTION_ARGS)
{
	AuthctxToken *tok = PG_GETARG_AUTHCTX_TOKEN(0);

	switch (tok->kind)
	{
		case TOKEN_SESSION:
			PG_RETURN_TEXT_P(cstring_to_text("session"));
		case TOKEN_REFRESH:
			PG_RETURN_TEXT_P(cstring_to_text("refresh"));
		case TOKEN_ONE_TIME:
			PG_RETURN_TEXT_P(cstring_to_text("one_time"));
		default:
			PG_RETURN_TEXT_P(cstring_to_text("api_key"));
	}
}

/* The verifier stored for a token (never the secret itself). */
Datum
authctx_token_verifier(PG_FUNCTION_ARGS)
{
	AuthctxToken *tok = PG_GETARG_AUTHCTX_TOKEN(0);
	bytea	   *result = palloc(VARHDRSZ + AUTHCTX_TOKEN_HASH_LEN);

	SET_VARSIZE(result, VARHDRSZ + AUTHCTX_TOKEN_HASH_LEN);
	TokenVerifier(tok, (unsigned char *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}
