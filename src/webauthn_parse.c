/*-------------------------------------------------------------------------
 *
 * webauthn_parse.c
 *		WebAuthn's untrusted bytes, without PostgreSQL: CBOR, COSE_Key,
 *		authenticatorData, and the cryptographic checks of an assertion.
 *
 * webauthn.c's header has the design; this file is its part that reads
 * attacker-supplied bytes, kept free of the server so that test/fuzz runs
 * it under libFuzzer and the sanitizers:
 *
 *	- a small, strict CBOR reader for the one structure we accept, the
 *	  COSE_Key of an EdDSA (Ed25519) or ES256 (P-256) credential.  It accepts
 *	  exactly the deterministic encoding CTAP2 authenticators produce
 *	  (definite lengths, shortest-form integers, no duplicate or unknown
 *	  labels, no trailing bytes) and refuses anything else; so does the
 *	  COSE check, which also validates the public point;
 *	- the fixed head of authenticatorData (rpIdHash, flags, signCount);
 *	- the assertion check: rpIdHash, the user-present flag and the signature
 *	  over authenticatorData || SHA-256(clientDataJSON), with libsodium
 *	  (Ed25519, SHA-256) and OpenSSL's libcrypto (P-256 ECDSA).  It never
 *	  fails for bad input: it answers a negative ASSERT_* code.
 *
 * clientDataJSON itself is parsed by the SQL side (jsonb); here it is only
 * hashed.  Nothing here keeps state, and OpenSSL's thread-local error queue
 * is cleared after every use, so that nothing we leave there is mistaken by
 * the server's own TLS code for an error of its own.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "parse.h"

/* COSE (RFC 9052/9053) labels and values we accept. */
#define COSE_KEY_KTY		1
#define COSE_KEY_ALG		3
#define COSE_KEY_CRV		(-1)
#define COSE_KEY_X			(-2)
#define COSE_KEY_Y			(-3)
#define COSE_KTY_OKP		1
#define COSE_KTY_EC2		2
#define COSE_CRV_P256		1
#define COSE_CRV_ED25519	6

/* Bounds on what we are willing to parse. */
#define COSE_KEY_MAX_LEN	1024	/* real keys are 42 (EdDSA) or 77 bytes */
#define COSE_MAX_PAIRS		16
#define AUTHDATA_MIN_LEN	37		/* rpIdHash 32, flags 1, signCount 4 */
#define AUTHDATA_MAX_LEN	65536
#define CLIENTDATA_MAX_LEN	65536
#define SIGNATURE_MAX_LEN	256
#define AUTHDATA_FLAG_UP	0x01

/* ---------------------------------------------------------------------
 * A strict CBOR reader (RFC 8949), for the subset a COSE_Key needs.
 * ---------------------------------------------------------------------
 */

typedef struct CborReader
{
	const unsigned char *p;		/* next unread byte */
	const unsigned char *end;	/* one past the last byte */
} CborReader;

#define CBOR_UINT	0
#define CBOR_NEGINT 1
#define CBOR_BYTES	2
#define CBOR_TEXT	3
#define CBOR_MAP	5

/* One decoded data item: an integer, a string, or a map header. */
typedef struct CborItem
{
	int			major;			/* one of CBOR_* above */
	int64_t		ival;			/* integers: the value */
	uint64_t	len;			/* strings: byte length; maps: pair count */
	const unsigned char *data;	/* strings: the bytes, inside the input */
} CborItem;

/*
 * Read an item's head (major type and argument), refusing indefinite
 * lengths, reserved values and any argument not in its shortest form, so
 * that a key has exactly one accepted encoding.
 */
static bool
CborReadHead(CborReader *r, int *major, uint64_t *arg)
{
	unsigned char ib;
	int			info;
	int			nbytes;
	uint64_t	v = 0;

	if (r->p >= r->end)
		return false;
	ib = *r->p++;
	*major = ib >> 5;
	info = ib & 0x1f;

	if (info < 24)
	{
		*arg = (uint64_t) info;
		return true;
	}
	switch (info)
	{
		case 24:
			nbytes = 1;
			break;
		case 25:
			nbytes = 2;
			break;
		case 26:
			nbytes = 4;
			break;
		case 27:
			nbytes = 8;
			break;
		default:
			return false;		/* reserved (28-30) or indefinite (31) */
	}
	if (r->end - r->p < nbytes)
		return false;
	for (int i = 0; i < nbytes; i++)
		v = (v << 8) | *r->p++;

	/* shortest form only */
	if ((nbytes == 1 && v < 24) ||
		(nbytes == 2 && v <= 0xff) ||
		(nbytes == 4 && v <= 0xffff) ||
		(nbytes == 8 && v <= 0xffffffff))
		return false;
	*arg = v;
	return true;
}

/*
 * Read one item of a type we support.  Strings are not copied: the item
 * points into the input, whose bounds were checked.
 */
static bool
CborReadItem(CborReader *r, CborItem *item)
{
	uint64_t	arg;

	if (!CborReadHead(r, &item->major, &arg))
		return false;

	switch (item->major)
	{
		case CBOR_UINT:
			if (arg > (uint64_t) INT64_MAX)
				return false;
			item->ival = (int64_t) arg;
			return true;
		case CBOR_NEGINT:
			if (arg > (uint64_t) INT64_MAX)
				return false;
			item->ival = -1 - (int64_t) arg;
			return true;
		case CBOR_BYTES:
		case CBOR_TEXT:
			if (arg > (uint64_t) (r->end - r->p))
				return false;
			item->len = arg;
			item->data = r->p;
			r->p += arg;
			return true;
		case CBOR_MAP:
			item->len = arg;
			return true;
		default:
			return false;		/* arrays, tags, floats, simple values */
	}
}

/* Is this item an integer (either sign)? */
static inline bool
CborIsInt(const CborItem *item)
{
	return item->major == CBOR_UINT || item->major == CBOR_NEGINT;
}

/*
 * Parse a COSE_Key into *key.  Accepts exactly two shapes:
 *	{1: 1 (OKP), 3: -8 (EdDSA), -1: 6 (Ed25519), -2: bstr .size 32}
 *	{1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: bstr .size 32, -3: bstr .size 32}
 * in any order, nothing else in the map, nothing after it.  An Ed25519
 * point is validated as well (a P-256 one by WebauthnKeyUsable, which
 * needs OpenSSL).  The status says why anything else was refused.
 */
ParseStatus
CoseKeyParse(const unsigned char *buf, size_t len, WebauthnKey *key)
{
	CborReader	r;
	CborItem	map;
	int64_t		kty = 0,
				alg = 0,
				crv = 0;
	const unsigned char *x = NULL;
	const unsigned char *y = NULL;
	bool		seen_kty = false,
				seen_alg = false,
				seen_crv = false;

	memset(key, 0, sizeof(*key));
	if (len == 0 || len > COSE_KEY_MAX_LEN)
		return PARSE_LENGTH;
	r.p = buf;
	r.end = buf + len;

	if (!CborReadItem(&r, &map) || map.major != CBOR_MAP ||
		map.len == 0 || map.len > COSE_MAX_PAIRS)
		return PARSE_SYNTAX;

	for (uint64_t i = 0; i < map.len; i++)
	{
		CborItem	label;
		CborItem	value;

		if (!CborReadItem(&r, &label) || !CborReadItem(&r, &value))
			return PARSE_SYNTAX;
		if (!CborIsInt(&label) || value.major == CBOR_MAP)
			return PARSE_UNSUPPORTED;	/* text labels, nested maps: not ours */

		switch (label.ival)
		{
			case COSE_KEY_KTY:
				if (seen_kty || !CborIsInt(&value))
					return PARSE_SYNTAX;
				seen_kty = true;
				kty = value.ival;
				break;
			case COSE_KEY_ALG:
				if (seen_alg || !CborIsInt(&value))
					return PARSE_SYNTAX;
				seen_alg = true;
				alg = value.ival;
				break;
			case COSE_KEY_CRV:
				if (seen_crv || !CborIsInt(&value))
					return PARSE_SYNTAX;
				seen_crv = true;
				crv = value.ival;
				break;
			case COSE_KEY_X:
				if (x != NULL || value.major != CBOR_BYTES ||
					value.len != WEBAUTHN_COORD_LEN)
					return PARSE_SYNTAX;
				x = value.data;
				break;
			case COSE_KEY_Y:
				if (y != NULL || value.major != CBOR_BYTES ||
					value.len != WEBAUTHN_COORD_LEN)
					return PARSE_SYNTAX;
				y = value.data;
				break;
			default:
				return PARSE_UNSUPPORTED;	/* kid, key_ops, d (!), anything else */
		}
	}
	if (r.p != r.end)
		return PARSE_SYNTAX;	/* trailing bytes */
	if (!seen_kty || !seen_alg || !seen_crv || x == NULL)
		return PARSE_SYNTAX;

	if (kty == COSE_KTY_OKP && alg == WEBAUTHN_COSE_EDDSA &&
		crv == COSE_CRV_ED25519 && y == NULL)
	{
		/* on the curve, canonical, not of small order */
		if (!crypto_core_ed25519_is_valid_point(x))
			return PARSE_INVALID;
		key->alg = WEBAUTHN_COSE_EDDSA;
		memcpy(key->x, x, WEBAUTHN_COORD_LEN);
		return PARSE_OK;
	}
	if (kty == COSE_KTY_EC2 && alg == WEBAUTHN_COSE_ES256 &&
		crv == COSE_CRV_P256 && y != NULL)
	{
		key->alg = WEBAUTHN_COSE_ES256;
		memcpy(key->x, x, WEBAUTHN_COORD_LEN);
		memcpy(key->y, y, WEBAUTHN_COORD_LEN);
		return PARSE_OK;
	}
	return PARSE_UNSUPPORTED;
}

/* ---------------------------------------------------------------------
 * Signatures.
 * ---------------------------------------------------------------------
 */

/*
 * Build an OpenSSL P-256 public key from x and y; NULL when the point is
 * not on the curve.  The caller frees the result.
 */
static EVP_PKEY *
Es256PublicKey(const WebauthnKey *key)
{
	unsigned char point[1 + 2 * WEBAUTHN_COORD_LEN];
	char		group[] = "prime256v1";
	OSSL_PARAM	params[3];
	EVP_PKEY_CTX *ctx;
	EVP_PKEY   *pkey = NULL;

	point[0] = 0x04;			/* uncompressed */
	memcpy(point + 1, key->x, WEBAUTHN_COORD_LEN);
	memcpy(point + 1 + WEBAUTHN_COORD_LEN, key->y, WEBAUTHN_COORD_LEN);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
												 group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
												  point, sizeof(point));
	params[2] = OSSL_PARAM_construct_end();

	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);

	/* fromdata decodes the point; check it fully all the same */
	if (pkey != NULL)
	{
		EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

		if (check == NULL || EVP_PKEY_public_check(check) != 1)
		{
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(check);
	}
	ERR_clear_error();
	return pkey;
}

/* Verify a DER-encoded ECDSA P-256/SHA-256 signature over msg. */
static bool
Es256Verify(const WebauthnKey *key, const unsigned char *msg, size_t msglen,
			const unsigned char *sig, size_t siglen)
{
	EVP_PKEY   *pkey;
	EVP_MD_CTX *md;
	bool		ok = false;

	pkey = Es256PublicKey(key);
	if (pkey == NULL)
		return false;
	md = EVP_MD_CTX_new();
	if (md != NULL &&
		EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey,
								NULL) == 1)
		ok = (EVP_DigestVerify(md, sig, siglen, msg, msglen) == 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return ok;
}

/* Verify an Ed25519 signature (exactly 64 bytes) over msg. */
static bool
EddsaVerify(const WebauthnKey *key, const unsigned char *msg, size_t msglen,
			const unsigned char *sig, size_t siglen)
{
	if (siglen != crypto_sign_BYTES)
		return false;
	return crypto_sign_verify_detached(sig, msg, msglen, key->x) == 0;
}


/* ---------------------------------------------------------------------
 * authenticatorData and the assertion check.
 * ---------------------------------------------------------------------
 */

/*
 * Read the fixed head of authenticatorData: 32 bytes of rpIdHash, the
 * flags byte and the big-endian signature counter.  What follows (attested
 * credential data, extensions) is covered by the signature and not read.
 */
ParseStatus
WebauthnAuthDataParse(const unsigned char *buf, size_t len, WebauthnAuthData *out)
{
	memset(out, 0, sizeof(*out));
	if (len < AUTHDATA_MIN_LEN || len > AUTHDATA_MAX_LEN)
		return PARSE_LENGTH;
	out->rp_id_hash = buf;
	out->flags = buf[32];
	out->sign_count = ((uint32_t) buf[33] << 24) | ((uint32_t) buf[34] << 16) |
		((uint32_t) buf[35] << 8) | (uint32_t) buf[36];
	return PARSE_OK;
}

/*
 * Is a parsed key usable for verification?  An ES256 point must be on the
 * curve, which only OpenSSL can tell; CoseKeyParse checked Ed25519 already.
 */
bool
WebauthnKeyUsable(const WebauthnKey *key)
{
	EVP_PKEY   *pkey;

	if (key->alg == WEBAUTHN_COSE_EDDSA)
		return true;
	if (key->alg != WEBAUTHN_COSE_ES256)
		return false;
	pkey = Es256PublicKey(key);
	EVP_PKEY_free(pkey);
	return pkey != NULL;
}

/*
 * The checks of an assertion that need cryptography, in one place that
 * never fails for bad input: the authenticator's signature counter when the
 * rpIdHash is SHA-256(rp_id), the user-present flag is set and the
 * signature over authenticatorData || SHA-256(clientDataJSON) verifies with
 * the COSE key; otherwise a negative ASSERT_* code.
 */
int64_t
WebauthnCheckAssertion(const unsigned char *cose, size_t coselen,
					   const unsigned char *authdata, size_t adlen,
					   const unsigned char *clientdata, size_t cdlen,
					   const unsigned char *sig, size_t siglen,
					   const char *rp_id, size_t rp_idlen)
{
	unsigned char rp_hash[crypto_hash_sha256_BYTES];
	unsigned char *msg;
	size_t		msglen;
	WebauthnKey key;
	WebauthnAuthData ad;
	bool		ok;

	if (WebauthnAuthDataParse(authdata, adlen, &ad) != PARSE_OK ||
		cdlen > CLIENTDATA_MAX_LEN || siglen == 0 ||
		siglen > SIGNATURE_MAX_LEN ||
		CoseKeyParse(cose, coselen, &key) != PARSE_OK)
		return ASSERT_MALFORMED;

	crypto_hash_sha256(rp_hash, (const unsigned char *) rp_id, rp_idlen);
	if (sodium_memcmp(ad.rp_id_hash, rp_hash, sizeof(rp_hash)) != 0)
		return ASSERT_RP_ID;
	if ((ad.flags & AUTHDATA_FLAG_UP) == 0)
		return ASSERT_NOT_PRESENT;

	/* the signed message: authenticatorData || SHA-256(clientDataJSON) */
	msglen = adlen + crypto_hash_sha256_BYTES;
	msg = malloc(msglen);
	if (msg == NULL)
		return ASSERT_NOMEM;
	memcpy(msg, authdata, adlen);
	crypto_hash_sha256(msg + adlen, clientdata, cdlen);

	if (key.alg == WEBAUTHN_COSE_EDDSA)
		ok = EddsaVerify(&key, msg, msglen, sig, siglen);
	else
		ok = Es256Verify(&key, msg, msglen, sig, siglen);
	free(msg);
	if (!ok)
		return ASSERT_SIGNATURE;
	return (int64_t) ad.sign_count;
}
