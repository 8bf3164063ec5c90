/*-------------------------------------------------------------------------
 *
 * token_parse.c
 *		The authctx.token text and binary forms, without PostgreSQL.
 *
 * A token's text form is
 *
 *		axs_<base64url(id[16] || secret[32] || check[4])>
 *
 * (token.c's header has the design).  This file decodes and encodes that
 * form and the binary one (kind byte, id, secret) over plain buffers, so
 * that the same code runs in the server and in the fuzz targets of
 * test/fuzz.  Decoding checks length, prefix, alphabet, canonical base64url
 * and the checksum, in that order, and wipes everything it decoded when it
 * refuses.  No function here looks at a byte outside [str, str + len).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include <sodium.h>

#include "parse.h"

#define TOKEN_PREFIX_LEN	4
#define TOKEN_CHECK_LEN		4
#define TOKEN_RAW_LEN		(AUTHCTX_TOKEN_ID_LEN + AUTHCTX_TOKEN_SECRET_LEN + TOKEN_CHECK_LEN)
/* base64url without padding of 52 bytes is 70 characters */
#define TOKEN_B64_LEN		(AUTHCTX_TOKEN_TEXT_LEN - TOKEN_PREFIX_LEN)

/* Prefix for a kind, or NULL for an unknown kind. */
static const char *
TokenPrefix(char kind)
{
	switch (kind)
	{
		case TOKEN_SESSION:
			return "axs_";
		case TOKEN_REFRESH:
			return "axr_";
		case TOKEN_API_KEY:
			return "axk_";
		case TOKEN_ONE_TIME:
			return "axo_";
	}
	return NULL;
}

/*
 * Kind for a prefix, or 0 when the text does not start with one.  Reads
 * str[0], str[1], str[2], str[3] in that order and stops at the first
 * mismatch, so a NUL-terminated string of any length is safe to pass (log
 * redaction does).
 */
char
TokenKindOfPrefix(const char *str)
{
	char		kind;

	if (str[0] != 'a' || str[1] != 'x')
		return 0;
	switch (str[2])
	{
		case 's':
			kind = TOKEN_SESSION;
			break;
		case 'r':
			kind = TOKEN_REFRESH;
			break;
		case 'k':
			kind = TOKEN_API_KEY;
			break;
		case 'o':
			kind = TOKEN_ONE_TIME;
			break;
		default:
			return 0;
	}
	return str[3] == '_' ? kind : 0;
}

/* The checksum binds prefix, id and secret together (kind must be known). */
static void
TokenChecksum(const AuthctxToken *tok, unsigned char *out)
{
	unsigned char buf[TOKEN_PREFIX_LEN + AUTHCTX_TOKEN_ID_LEN + AUTHCTX_TOKEN_SECRET_LEN];
	unsigned char digest[16];

	memcpy(buf, TokenPrefix(tok->kind), TOKEN_PREFIX_LEN);
	memcpy(buf + TOKEN_PREFIX_LEN, tok->id, AUTHCTX_TOKEN_ID_LEN);
	memcpy(buf + TOKEN_PREFIX_LEN + AUTHCTX_TOKEN_ID_LEN, tok->secret,
		   AUTHCTX_TOKEN_SECRET_LEN);
	crypto_generichash(digest, sizeof(digest), buf, sizeof(buf), NULL, 0);
	memcpy(out, digest, TOKEN_CHECK_LEN);
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(digest, sizeof(digest));
}

/*
 * Decode a token's text form: PARSE_OK for a well-formed token with a
 * correct checksum; otherwise *out is wiped and the status says why.
 */
ParseStatus
TokenDecodeText(const char *str, size_t len, AuthctxToken *out)
{
	unsigned char raw[TOKEN_RAW_LEN];
	unsigned char check[TOKEN_CHECK_LEN];
	size_t		rawlen = 0;
	ParseStatus st;

	memset(out, 0, sizeof(*out));
	if (str == NULL || len != AUTHCTX_TOKEN_TEXT_LEN)
		return PARSE_LENGTH;
	out->kind = TokenKindOfPrefix(str);
	if (out->kind == 0)
		return PARSE_SYNTAX;

	st = B64urlDecode(str + TOKEN_PREFIX_LEN, TOKEN_B64_LEN, raw, sizeof(raw),
					  &rawlen);
	if (st == PARSE_OK && rawlen != TOKEN_RAW_LEN)
		st = PARSE_LENGTH;		/* cannot happen: 70 characters are 52 bytes */
	if (st == PARSE_OK)
	{
		memcpy(out->id, raw, AUTHCTX_TOKEN_ID_LEN);
		memcpy(out->secret, raw + AUTHCTX_TOKEN_ID_LEN, AUTHCTX_TOKEN_SECRET_LEN);
		TokenChecksum(out, check);
		if (sodium_memcmp(check, raw + AUTHCTX_TOKEN_ID_LEN + AUTHCTX_TOKEN_SECRET_LEN,
						  TOKEN_CHECK_LEN) != 0)
			st = PARSE_CHECKSUM;
	}
	sodium_memzero(raw, sizeof(raw));
	if (st != PARSE_OK)
		sodium_memzero(out, sizeof(*out));
	return st;
}

/*
 * Decode the binary form (exactly AUTHCTX_TOKEN_SIZE bytes: kind, id,
 * secret); it carries no checksum, so only length and kind are checked.
 */
ParseStatus
TokenDecodeBinary(const unsigned char *buf, size_t len, AuthctxToken *out)
{
	memset(out, 0, sizeof(*out));
	if (buf == NULL || len != AUTHCTX_TOKEN_SIZE)
		return PARSE_LENGTH;
	if (TokenPrefix((char) buf[0]) == NULL)
		return PARSE_UNSUPPORTED;
	out->kind = (char) buf[0];
	memcpy(out->id, buf + 1, AUTHCTX_TOKEN_ID_LEN);
	memcpy(out->secret, buf + 1 + AUTHCTX_TOKEN_ID_LEN, AUTHCTX_TOKEN_SECRET_LEN);
	return PARSE_OK;
}

/*
 * Format a token into out (AUTHCTX_TOKEN_TEXT_LEN characters and a NUL);
 * false, with out empty, for a token of unknown kind.
 */
bool
TokenEncodeText(const AuthctxToken *tok, char out[AUTHCTX_TOKEN_TEXT_LEN + 1])
{
	unsigned char raw[TOKEN_RAW_LEN];
	const char *prefix = TokenPrefix(tok->kind);

	out[0] = '\0';
	if (prefix == NULL)
		return false;
	memcpy(raw, tok->id, AUTHCTX_TOKEN_ID_LEN);
	memcpy(raw + AUTHCTX_TOKEN_ID_LEN, tok->secret, AUTHCTX_TOKEN_SECRET_LEN);
	TokenChecksum(tok, raw + AUTHCTX_TOKEN_ID_LEN + AUTHCTX_TOKEN_SECRET_LEN);
	memcpy(out, prefix, TOKEN_PREFIX_LEN);
	sodium_bin2base64(out + TOKEN_PREFIX_LEN, TOKEN_B64_LEN + 1, raw, sizeof(raw),
					  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	return true;
}
