/*-------------------------------------------------------------------------
 *
 * parse.h
 *		The parsers of untrusted bytes, free of PostgreSQL.
 *
 * Every function declared here is plain C over a buffer the caller owns:
 * no palloc, no ereport, no PostgreSQL header, no global state.  Each
 * reports failure through its result (a ParseStatus, or a documented
 * value), never by raising, and reads nothing outside the bounds it was
 * given.  The SQL-callable wrappers in token.c, webauthn.c and redact.c
 * map those results to errors with the right SQLSTATE; test/fuzz builds
 * the same files, without a server, into libFuzzer targets (make fuzz).
 *
 * Callers must have initialised libsodium (sodium_init, or CryptoInit in
 * the server) before calling anything here.
 *
 * Files: token_parse.c (token text and binary forms), base64url.c,
 * webauthn_parse.c (CBOR, COSE_Key, authenticatorData, the assertion
 * check), redact_scan.c (the log redaction scanner).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_PARSE_H
#define AUTHCTX_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a parser refused its input (the wrappers decide the SQLSTATE). */
typedef enum ParseStatus
{
	PARSE_OK = 0,
	PARSE_LENGTH,				/* a length out of bounds, or truncated */
	PARSE_SYNTAX,				/* bytes that are not the format */
	PARSE_CHECKSUM,				/* well-formed, but the checksum is wrong */
	PARSE_UNSUPPORTED,			/* well-formed, but not a kind we accept */
	PARSE_INVALID,				/* well-formed, but an invalid value (a key
								 * that is not a point of its curve) */
	PARSE_NOMEM					/* out of memory */
} ParseStatus;

/* ---- token_parse.c: the authctx.token wire formats ---- */
#define AUTHCTX_TOKEN_ID_LEN		16	/* public id (uuid bytes) */
#define AUTHCTX_TOKEN_SECRET_LEN	32	/* 256-bit secret */
#define AUTHCTX_TOKEN_TEXT_LEN		74	/* prefix 4 + base64url of 52 bytes */

typedef enum AuthctxTokenKind
{
	TOKEN_SESSION = 's',
	TOKEN_REFRESH = 'r',
	TOKEN_API_KEY = 'k',
	TOKEN_ONE_TIME = 'o'		/* email links, invitations (onetime module) */
} AuthctxTokenKind;

/* Fixed-length on-disk / in-memory form of authctx.token. */
typedef struct AuthctxToken
{
	char		kind;			/* an AuthctxTokenKind */
	unsigned char id[AUTHCTX_TOKEN_ID_LEN]; /* public lookup key */
	unsigned char secret[AUTHCTX_TOKEN_SECRET_LEN];	/* never stored */
} AuthctxToken;

/* The binary form (send/recv) is these bytes: kind, id, secret. */
#define AUTHCTX_TOKEN_SIZE	(1 + AUTHCTX_TOKEN_ID_LEN + AUTHCTX_TOKEN_SECRET_LEN)

extern ParseStatus TokenDecodeText(const char *str, size_t len, AuthctxToken *out);
extern ParseStatus TokenDecodeBinary(const unsigned char *buf, size_t len,
									 AuthctxToken *out);
extern bool TokenEncodeText(const AuthctxToken *tok,
							char out[AUTHCTX_TOKEN_TEXT_LEN + 1]);
extern char TokenKindOfPrefix(const char *str);

/* ---- base64url.c ---- */
/* Room enough for the bytes that n base64url characters decode to. */
#define B64URL_DECODED_MAX(n)	((n) / 4 * 3 + 2)

/* Is c in the base64url alphabet, A-Z a-z 0-9 - _?  (Tokens, redaction.) */
static inline bool
B64urlIsChar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The value of a hexadecimal digit (either case), or -1.  (JSON escapes, TOTP secrets.) */
static inline int
HexDigitValue(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

extern ParseStatus B64urlDecode(const char *in, size_t inlen,
								unsigned char *out, size_t outmax,
								size_t *outlen);

/* ---- webauthn_parse.c ---- */
#define WEBAUTHN_COORD_LEN		32
#define WEBAUTHN_COSE_EDDSA		(-8)
#define WEBAUTHN_COSE_ES256		(-7)

/* A credential public key, as read from its COSE_Key. */
typedef struct WebauthnKey
{
	int			alg;			/* WEBAUTHN_COSE_EDDSA or WEBAUTHN_COSE_ES256 */
	unsigned char x[WEBAUTHN_COORD_LEN];	/* Ed25519 key, or P-256 x */
	unsigned char y[WEBAUTHN_COORD_LEN];	/* P-256 y; unused for EdDSA */
} WebauthnKey;

/* The fixed head of authenticatorData (WebAuthn §6.1). */
typedef struct WebauthnAuthData
{
	const unsigned char *rp_id_hash;	/* 32 bytes, inside the input */
	unsigned char flags;		/* UP 0x01, UV 0x04, AT 0x40, ED 0x80, ... */
	uint32_t	sign_count;
} WebauthnAuthData;

/*
 * Results of WebauthnCheckAssertion other than a counter; the SQL side maps
 * them to the reason recorded in the audit log.
 */
#define ASSERT_MALFORMED	(-1)
#define ASSERT_RP_ID		(-2)
#define ASSERT_NOT_PRESENT	(-3)
#define ASSERT_SIGNATURE	(-4)
#define ASSERT_NOMEM		(-5)	/* never reaches SQL: the wrapper raises */

/* A registration's attestation object, as WebauthnRegistrationParse reads it. */
typedef struct WebauthnRegistration
{
	WebauthnAuthData ad;		/* rpIdHash, flags, signCount */
	const unsigned char *cred_id;	/* credential id, inside the input */
	size_t		cred_id_len;	/* 1 to 1023 */
	const unsigned char *cose;	/* credential public key, inside the input */
	size_t		cose_len;
	WebauthnKey key;			/* that key, parsed and usable */
	const unsigned char *fmt;	/* attestation format name, inside the input */
	size_t		fmt_len;
} WebauthnRegistration;

/*
 * Results of WebauthnRegistrationParse other than 0; the SQL side maps them
 * to the reason recorded in the audit log.
 */
#define REGISTER_MALFORMED		(-1)	/* not an attestation object we read */
#define REGISTER_RP_ID			(-2)
#define REGISTER_NOT_PRESENT	(-3)
#define REGISTER_NO_CREDENTIAL	(-6)	/* no attested credential data */
#define REGISTER_ATTESTATION	(-7)	/* a format or statement we refuse */
#define REGISTER_KEY			(-8)	/* not an EdDSA or ES256 key, or invalid */
#define REGISTER_CREDENTIAL_ID	(-9)	/* credential id of 0 or over 1023 bytes */

extern ParseStatus CoseKeyParse(const unsigned char *buf, size_t len,
								WebauthnKey *key);
extern int	WebauthnRegistrationParse(const unsigned char *att, size_t attlen,
									  const char *rp_id, size_t rp_idlen,
									  WebauthnRegistration *out);
extern bool WebauthnKeyUsable(const WebauthnKey *key);
extern ParseStatus WebauthnAuthDataParse(const unsigned char *buf, size_t len,
										 WebauthnAuthData *out);
extern int64_t WebauthnCheckAssertion(const unsigned char *cose, size_t coselen,
									  const unsigned char *authdata, size_t adlen,
									  const unsigned char *clientdata, size_t cdlen,
									  const unsigned char *sig, size_t siglen,
									  const char *rp_id, size_t rp_idlen);

/* ---- redact_scan.c ---- */
extern const char *RedactFind(const char *str, size_t *matchlen);
extern size_t RedactScrub(const char *str, char *out);

#endif							/* AUTHCTX_PARSE_H */
