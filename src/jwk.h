/*-------------------------------------------------------------------------
 *
 * jwk.h
 *		JWK and JWK Set parsing (RFC 7517, 7518, 8037), in plain C.
 *
 * No PostgreSQL dependency and no allocation: the caller provides a
 * JwksWork and an array of JwkKey.  See jwk.c for what is accepted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_JWK_H
#define AUTHCTX_JWK_H

#include <stdbool.h>
#include <stddef.h>

#include "jws.h"
#include "pkey.h"
#include "sjson.h"

#define JWKS_MAX_KEYS		64
#define JWKS_MAX_TEXT		(1024 * 1024)
#define JWKS_NODES			16384
#define JWKS_DEPTH			8
#define JWK_KID_MAX			255

typedef enum JwkKty
{
	JWK_KTY_UNKNOWN = 0,
	JWK_KTY_OKP,				/* Ed25519 */
	JWK_KTY_EC,					/* P-256 */
	JWK_KTY_RSA
} JwkKty;

/* What became of one key of a set. */
typedef enum JwkStatus
{
	JWK_OK = 0,					/* a usable verification key */
	JWK_SKIP_TYPE,				/* a key type or curve we do not verify with */
	JWK_SKIP_ALG,				/* names an algorithm we do not verify with */
	JWK_SKIP_USE,				/* use other than "sig", or key_ops without
								 * "verify" */
	JWK_ERR_NOT_OBJECT,			/* not a JSON object */
	JWK_ERR_PRIVATE,			/* carries private or secret key material */
	JWK_ERR_KID,				/* kid not a string of 1 to 255 printable bytes */
	JWK_ERR_MALFORMED,			/* a member missing, of the wrong type or
								 * length, not canonical base64url, or one
								 * that belongs to another key type */
	JWK_ERR_INVALID,			/* not a valid public key (point, modulus) */
	JWK_ERR_RSA_SIZE,			/* RSA modulus under 2048 or over 8192 bits */
	JWK_ERR_DUPLICATE_KID		/* a usable key with the kid of an earlier one */
} JwkStatus;

/* Whole-set failures. */
typedef enum JwksStatus
{
	JWKS_OK = 0,
	JWKS_ERR_JSON,				/* not strict JSON */
	JWKS_ERR_SHAPE,				/* not {"keys": [...]} */
	JWKS_ERR_TOO_MANY			/* more than JWKS_MAX_KEYS keys */
} JwksStatus;

/* One key of a set, in the form the registry stores. */
typedef struct JwkKey
{
	JwkStatus	status;
	const char *member;			/* the member at fault (a constant), or NULL */
	JwkKty		kty;
	JwsAlg		alg;			/* the one algorithm this key verifies */
	bool		alg_named;		/* the JWK named it in "alg" */
	bool		has_kid;
	char		kid[JWK_KID_MAX + 1];
	size_t		publen;
	unsigned char pub[PKEY_DER_MAX];	/* Ed25519: 32 bytes; P-256: the
										 * 65-byte point; RSA: DER SPKI */
} JwkKey;

/* Buffers for parsing one JWK Set. */
typedef struct JwksWork
{
	SjsonDoc	doc;
	SjsonNode	nodes[JWKS_NODES];
	char		scratch[JWKS_MAX_TEXT];
} JwksWork;

extern JwkStatus JwkParse(const SjsonDoc *doc, uint32_t node, JwkKey *key);
extern JwksStatus JwksParse(const char *text, size_t len, JwksWork *work,
							JwkKey *keys, int maxkeys, int *nkeys);
extern const char *JwkKtyName(JwkKty kty);
extern const char *JwkStatusName(JwkStatus status);

#endif							/* AUTHCTX_JWK_H */
