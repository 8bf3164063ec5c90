/*-------------------------------------------------------------------------
 *
 * jws.h
 *		Compact JWS / JWT parsing and claim checks, in plain C.
 *
 * No PostgreSQL dependency and no allocation: the caller provides one
 * JwsToken (about 100 kB, it holds every buffer), so that a libFuzzer
 * harness drives exactly the code the server runs.  See jws.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_JWS_H
#define AUTHCTX_JWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sjson.h"

#define JWS_MAX_TOKEN_LEN	16384	/* the contract: tokens over 16 kB refused */
#define JWS_MAX_PART_LEN	(JWS_MAX_TOKEN_LEN / 4 * 3)	/* a decoded segment */
#define JWS_MAX_SIG_LEN		1024	/* RSA up to 8192 bits */
#define JWS_HEADER_NODES	128
#define JWS_CLAIMS_NODES	2048
#define JWS_HEADER_DEPTH	8
#define JWS_CLAIMS_DEPTH	32
#define JWT_MAX_NAME_LEN	1024	/* iss, sub, aud entries, kid */
#define JWT_MAX_NUMERIC_DATE INT64_C(253402300799)	/* 9999-12-31T23:59:59Z */

/* The signature algorithms authctx verifies; anything else is refused. */
typedef enum JwsAlg
{
	JWS_ALG_UNKNOWN = 0,
	JWS_ALG_EDDSA,				/* Ed25519, libsodium */
	JWS_ALG_ES256,				/* ECDSA P-256 SHA-256, libcrypto */
	JWS_ALG_RS256				/* RSASSA-PKCS1-v1_5 SHA-256, libcrypto */
} JwsAlg;

/* Why a token is refused (JWT_OK: it is not). */
typedef enum JwtStatus
{
	JWT_OK = 0,
	JWT_ERR_LENGTH,				/* empty, or over JWS_MAX_TOKEN_LEN */
	JWT_ERR_SHAPE,				/* not three non-empty dot-separated segments */
	JWT_ERR_BASE64,				/* a segment is not canonical unpadded base64url */
	JWT_ERR_HEADER_JSON,		/* the header is not a strict JSON object */
	JWT_ERR_HEADER,				/* alg missing or not a string; kid not a string */
	JWT_ERR_ALG,				/* alg other than EdDSA, ES256, RS256 */
	JWT_ERR_CRIT,				/* crit (or b64, zip): extensions we refuse */
	JWT_ERR_CLAIMS_JSON,		/* the payload is not a strict JSON object */
	JWT_ERR_CLAIM,				/* a registered claim is missing, of the wrong
								 * type, or out of range */
	JWT_ERR_ISSUER,				/* iss is not a registered issuer */
	JWT_ERR_KEY,				/* no key: unknown kid, no kid with several
								 * keys, or alg not the key's */
	JWT_ERR_SIGNATURE,			/* the signature does not verify */
	JWT_ERR_AUDIENCE,			/* aud lacks the issuer's audience */
	JWT_ERR_EXPIRED,			/* exp is past (with leeway) */
	JWT_ERR_NOT_YET_VALID,		/* nbf is in the future (with leeway) */
	JWT_ERR_ISSUED_IN_FUTURE,	/* iat is in the future (with leeway) */
	JWT_ERR_TENANT_CLAIM,		/* the issuer's tenant claim is not a string */
	JWT_ERR_ENCODING			/* a string the database encoding cannot hold */
} JwtStatus;

/* Registered claims, read and type-checked (node indexes: -1 when absent). */
typedef struct JwtClaims
{
	int32_t		iss;			/* string, required */
	int32_t		sub;			/* string, required */
	int32_t		aud;			/* string or array of strings, required */
	int32_t		scope;			/* string (space-separated) */
	int32_t		scp;			/* array of strings, or a string */
	int32_t		amr;			/* array of strings */
	int64_t		exp;			/* microseconds since 1970, rounded down */
	bool		has_nbf;
	int64_t		nbf;			/* rounded up */
	bool		has_iat;
	int64_t		iat;			/* rounded up */
} JwtClaims;

/* One token: the parse results, and every buffer they point into. */
typedef struct JwsToken
{
	JwsAlg		alg;
	bool		has_kid;
	const char *kid;			/* decoded, NUL-terminated (header scratch) */
	size_t		kid_len;
	const char *signing_input;	/* header.payload, inside the token */
	size_t		signing_input_len;
	size_t		siglen;
	SjsonDoc	header;
	SjsonDoc	claims;
	JwtClaims	c;
	SjsonStatus json_status;	/* why the header or claims JSON was refused */

	unsigned char sig[JWS_MAX_SIG_LEN];
	char		header_json[JWS_MAX_PART_LEN + 1];	/* decoded, NUL-ended */
	char		claims_json[JWS_MAX_PART_LEN + 1];
	char		header_scratch[JWS_MAX_PART_LEN];
	char		claims_scratch[JWS_MAX_PART_LEN];
	SjsonNode	header_nodes[JWS_HEADER_NODES];
	SjsonNode	claims_nodes[JWS_CLAIMS_NODES];
} JwsToken;

extern bool JwsLooksLikeJwt(const char *s, size_t len);
extern bool JwsB64Decode(const char *in, size_t inlen, unsigned char *out,
						 size_t outmax, size_t *outlen);
extern JwtStatus JwsParse(const char *token, size_t len, JwsToken *t);
extern bool JwtAudienceHas(const JwsToken *t, const char *audience, size_t len);
extern JwtStatus JwtCheckTimes(const JwsToken *t, int64_t now_us, int64_t leeway_us);
extern const char *JwtStatusName(JwtStatus status);
extern const char *JwsAlgName(JwsAlg alg);
extern JwsAlg JwsAlgFromName(const char *name, size_t len);

#endif							/* AUTHCTX_JWS_H */
