/*-------------------------------------------------------------------------
 *
 * webauthn.c
 *		WebAuthn (passkey) assertions: challenges, COSE keys, signatures.
 *
 * The SQL side (src/sql/60_webauthn.sql) owns the flow of a verification:
 * parsing clientDataJSON, spending the challenge, finding the credential,
 * the counter rule and the login.  This file holds only what SQL cannot do
 * safely or at all:
 *
 *	- issuing a challenge: 32 bytes from libsodium's CSPRNG, stored with an
 *	  expiry taken from authctx.webauthn_challenge_ttl;
 *	- a small, strict CBOR reader for the one structure we accept, the
 *	  COSE_Key of an EdDSA (Ed25519) or ES256 (P-256) credential;
 *	- checking an assertion: rpIdHash, the user-present flag and the
 *	  signature over authenticatorData || SHA-256(clientDataJSON), with
 *	  libsodium (Ed25519, SHA-256) and OpenSSL's libcrypto (P-256 ECDSA);
 *	- decoding the base64url challenge of clientDataJSON (libsodium).
 *
 * authctx contains no cryptography of its own: every primitive above is a
 * library call.  The CBOR reader accepts exactly the deterministic encoding
 * CTAP2 authenticators produce (definite lengths, shortest-form integers,
 * no duplicate or unknown labels, no trailing bytes) and refuses anything
 * else; so does the COSE check, which also validates the public point.
 *
 * Nothing here puts key material, signatures or challenges into a message.
 * Functions that look at attacker-supplied assertions never raise for bad
 * input: they report failure through their result, so that
 * verify_webauthn can answer NULL.  OpenSSL's thread-local error queue is
 * cleared after every use, so that nothing we leave there is mistaken by
 * the server's own TLS code for an error of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_webauthn_challenge);
PG_FUNCTION_INFO_V1(authctx_webauthn_key_alg);
PG_FUNCTION_INFO_V1(authctx_webauthn_check_assertion);
PG_FUNCTION_INFO_V1(authctx_webauthn_b64url_decode);

/* Lifetime of an issued challenge, in seconds. */
int			authctx_webauthn_challenge_ttl = 300;

#define WEBAUTHN_CHALLENGE_LEN	32
#define WEBAUTHN_CHALLENGE_SWEEP 16 /* expired rows removed per new challenge */

/* COSE (RFC 9052/9053) labels and values we accept. */
#define COSE_KEY_KTY		1
#define COSE_KEY_ALG		3
#define COSE_KEY_CRV		(-1)
#define COSE_KEY_X			(-2)
#define COSE_KEY_Y			(-3)
#define COSE_KTY_OKP		1
#define COSE_KTY_EC2		2
#define COSE_ALG_EDDSA		(-8)
#define COSE_ALG_ES256		(-7)
#define COSE_CRV_P256		1
#define COSE_CRV_ED25519	6
#define COSE_COORD_LEN		32

/* Bounds on what we are willing to parse. */
#define COSE_KEY_MAX_LEN	1024	/* real keys are 42 (EdDSA) or 77 bytes */
#define COSE_MAX_PAIRS		16
#define AUTHDATA_MIN_LEN	37		/* rpIdHash 32, flags 1, signCount 4 */
#define AUTHDATA_MAX_LEN	65536
#define CLIENTDATA_MAX_LEN	65536
#define SIGNATURE_MAX_LEN	256
#define AUTHDATA_FLAG_UP	0x01
#define CHALLENGE_B64_MAX	1024

/*
 * Results of authctx._webauthn_check_assertion other than a counter; the
 * SQL side maps them to the reason recorded in the audit log.
 */
#define ASSERT_MALFORMED	(-1)
#define ASSERT_RP_ID		(-2)
#define ASSERT_NOT_PRESENT	(-3)
#define ASSERT_SIGNATURE	(-4)

/* A credential public key, as read from its COSE_Key. */
typedef struct WebauthnKey
{
	int			alg;			/* COSE_ALG_EDDSA or COSE_ALG_ES256 */
	unsigned char x[COSE_COORD_LEN];	/* Ed25519 key, or P-256 x */
	unsigned char y[COSE_COORD_LEN];	/* P-256 y; unused for EdDSA */
} WebauthnKey;

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
	int64		ival;			/* integers: the value */
	uint64		len;			/* strings: byte length; maps: pair count */
	const unsigned char *data;	/* strings: the bytes, inside the input */
} CborItem;

/*
 * Read an item's head (major type and argument), refusing indefinite
 * lengths, reserved values and any argument not in its shortest form, so
 * that a key has exactly one accepted encoding.
 */
static bool
CborReadHead(CborReader *r, int *major, uint64 *arg)
{
	unsigned char ib;
	int			info;
	int			nbytes;
	uint64		v = 0;

	if (r->p >= r->end)
		return false;
	ib = *r->p++;
	*major = ib >> 5;
	info = ib & 0x1f;

	if (info < 24)
	{
		*arg = (uint64) info;
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
	uint64		arg;

	if (!CborReadHead(r, &item->major, &arg))
		return false;

	switch (item->major)
	{
		case CBOR_UINT:
			if (arg > (uint64) PG_INT64_MAX)
				return false;
			item->ival = (int64) arg;
			return true;
		case CBOR_NEGINT:
			if (arg > (uint64) PG_INT64_MAX)
				return false;
			item->ival = -1 - (int64) arg;
			return true;
		case CBOR_BYTES:
		case CBOR_TEXT:
			if (arg > (uint64) (r->end - r->p))
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
 * in any order, nothing else in the map, nothing after it.  The public
 * point is validated as well.  Returns false for anything else.
 */
static bool
CoseParseKey(const unsigned char *buf, size_t len, WebauthnKey *key)
{
	CborReader	r;
	CborItem	map;
	int64		kty = 0,
				alg = 0,
				crv = 0;
	const unsigned char *x = NULL;
	const unsigned char *y = NULL;
	bool		seen_kty = false,
				seen_alg = false,
				seen_crv = false;

	if (len == 0 || len > COSE_KEY_MAX_LEN)
		return false;
	r.p = buf;
	r.end = buf + len;

	if (!CborReadItem(&r, &map) || map.major != CBOR_MAP ||
		map.len == 0 || map.len > COSE_MAX_PAIRS)
		return false;

	for (uint64 i = 0; i < map.len; i++)
	{
		CborItem	label;
		CborItem	value;

		if (!CborReadItem(&r, &label) || !CborReadItem(&r, &value))
			return false;
		if (!CborIsInt(&label) || value.major == CBOR_MAP)
			return false;		/* text labels, nested maps: not ours */

		switch (label.ival)
		{
			case COSE_KEY_KTY:
				if (seen_kty || !CborIsInt(&value))
					return false;
				seen_kty = true;
				kty = value.ival;
				break;
			case COSE_KEY_ALG:
				if (seen_alg || !CborIsInt(&value))
					return false;
				seen_alg = true;
				alg = value.ival;
				break;
			case COSE_KEY_CRV:
				if (seen_crv || !CborIsInt(&value))
					return false;
				seen_crv = true;
				crv = value.ival;
				break;
			case COSE_KEY_X:
				if (x != NULL || value.major != CBOR_BYTES ||
					value.len != COSE_COORD_LEN)
					return false;
				x = value.data;
				break;
			case COSE_KEY_Y:
				if (y != NULL || value.major != CBOR_BYTES ||
					value.len != COSE_COORD_LEN)
					return false;
				y = value.data;
				break;
			default:
				return false;	/* kid, key_ops, d (!), anything else */
		}
	}
	if (r.p != r.end)
		return false;			/* trailing bytes */
	if (!seen_kty || !seen_alg || !seen_crv || x == NULL)
		return false;

	memset(key, 0, sizeof(*key));
	if (kty == COSE_KTY_OKP && alg == COSE_ALG_EDDSA &&
		crv == COSE_CRV_ED25519 && y == NULL)
	{
		CryptoInit();
		/* on the curve, canonical, not of small order */
		if (!crypto_core_ed25519_is_valid_point(x))
			return false;
		key->alg = COSE_ALG_EDDSA;
		memcpy(key->x, x, COSE_COORD_LEN);
		return true;
	}
	if (kty == COSE_KTY_EC2 && alg == COSE_ALG_ES256 &&
		crv == COSE_CRV_P256 && y != NULL)
	{
		key->alg = COSE_ALG_ES256;
		memcpy(key->x, x, COSE_COORD_LEN);
		memcpy(key->y, y, COSE_COORD_LEN);
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------------
 * Signatures.  No ereport between an OpenSSL allocation and its free.
 * ---------------------------------------------------------------------
 */

/*
 * Build an OpenSSL P-256 public key from x and y; NULL when the point is
 * not on the curve.  The caller frees the result.
 */
static EVP_PKEY *
Es256PublicKey(const WebauthnKey *key)
{
	unsigned char point[1 + 2 * COSE_COORD_LEN];
	char		group[] = "prime256v1";
	OSSL_PARAM	params[3];
	EVP_PKEY_CTX *ctx;
	EVP_PKEY   *pkey = NULL;

	point[0] = 0x04;			/* uncompressed */
	memcpy(point + 1, key->x, COSE_COORD_LEN);
	memcpy(point + 1 + COSE_COORD_LEN, key->y, COSE_COORD_LEN);
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
	CryptoInit();
	return crypto_sign_verify_detached(sig, msg, msglen, key->x) == 0;
}

/* ---------------------------------------------------------------------
 * SQL-callable functions.
 * ---------------------------------------------------------------------
 */

/*
 * authctx.webauthn_challenge() → bytea
 *
 * A fresh challenge must come from the CSPRNG and be remembered, so that
 * verify_webauthn can tell it was issued here and spend it once.  Each call
 * also removes a few expired challenges, so that the table stays small
 * between cleanups without any call doing unbounded work.
 */
Datum
authctx_webauthn_challenge(PG_FUNCTION_ARGS)
{
	unsigned char raw[WEBAUTHN_CHALLENGE_LEN];
	bytea	   *challenge;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expires = TimestampTzPlusMilliseconds(now,
													  (int64) authctx_webauthn_challenge_ttl * 1000);
	Oid			argtypes[2] = {BYTEAOID, TIMESTAMPTZOID};
	Datum		values[2];
	int			rc;

	CryptoRandomBytes(raw, sizeof(raw));
	challenge = (bytea *) palloc(VARHDRSZ + sizeof(raw));
	SET_VARSIZE(challenge, VARHDRSZ + sizeof(raw));
	memcpy(VARDATA(challenge), raw, sizeof(raw));
	CryptoZero(raw, sizeof(raw));

	values[0] = PointerGetDatum(challenge);
	values[1] = TimestampTzGetDatum(expires);

	SPI_connect();
	rc = SPI_execute_with_args("INSERT INTO authctx.webauthn_challenges "
							   "(challenge, expires_at) VALUES ($1, $2)",
							   2, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store webauthn challenge: %s",
			 SPI_result_code_string(rc));

	values[0] = TimestampTzGetDatum(now);
	rc = SPI_execute_with_args("DELETE FROM authctx.webauthn_challenges "
							   "WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
							   "SELECT ctid FROM authctx.webauthn_challenges "
							   "WHERE expires_at OPERATOR(pg_catalog.<) $1 "
							   "LIMIT " CppAsString2(WEBAUTHN_CHALLENGE_SWEEP)
							   " FOR UPDATE SKIP LOCKED))",
							   1, &argtypes[1], values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "could not remove expired webauthn challenges: %s",
			 SPI_result_code_string(rc));
	SPI_finish();

	PG_RETURN_BYTEA_P(challenge);
}

/*
 * authctx._webauthn_key_alg(public_key bytea) → integer
 *
 * add_webauthn_credential must refuse, at registration, any key that could
 * not be used later, so the COSE_Key is parsed strictly here and its COSE
 * algorithm returned; anything else raises 22023.
 */
Datum
authctx_webauthn_key_alg(PG_FUNCTION_ARGS)
{
	bytea	   *cose = PG_GETARG_BYTEA_PP(0);
	WebauthnKey key;
	bool		ok;

	ok = CoseParseKey((const unsigned char *) VARDATA_ANY(cose),
					  VARSIZE_ANY_EXHDR(cose), &key);
	if (ok && key.alg == COSE_ALG_ES256)
	{
		EVP_PKEY   *pkey = Es256PublicKey(&key);

		ok = (pkey != NULL);
		EVP_PKEY_free(pkey);
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported or malformed webauthn public key"),
				 errdetail("The public key must be a COSE_Key for EdDSA (Ed25519, alg -8) or ES256 (P-256, alg -7), in CTAP2 canonical CBOR.")));
	PG_RETURN_INT32(key.alg);
}

/*
 * authctx._webauthn_check_assertion(public_key, authenticator_data,
 *									 client_data_json, signature, rp_id)
 *		→ bigint
 *
 * The checks of an assertion that need cryptography, in one place that
 * never raises for bad input: returns the authenticator's signature counter
 * when the rpIdHash is SHA-256(rp_id), the user-present flag is set and the
 * signature over authenticatorData || SHA-256(clientDataJSON) verifies with
 * the key; otherwise a negative ASSERT_* code.
 */
Datum
authctx_webauthn_check_assertion(PG_FUNCTION_ARGS)
{
	bytea	   *cose = PG_GETARG_BYTEA_PP(0);
	bytea	   *authdata = PG_GETARG_BYTEA_PP(1);
	bytea	   *clientdata = PG_GETARG_BYTEA_PP(2);
	bytea	   *sig = PG_GETARG_BYTEA_PP(3);
	text	   *rp_id = PG_GETARG_TEXT_PP(4);
	const unsigned char *ad = (const unsigned char *) VARDATA_ANY(authdata);
	size_t		adlen = VARSIZE_ANY_EXHDR(authdata);
	size_t		cdlen = VARSIZE_ANY_EXHDR(clientdata);
	size_t		siglen = VARSIZE_ANY_EXHDR(sig);
	unsigned char rp_hash[crypto_hash_sha256_BYTES];
	unsigned char *msg;
	WebauthnKey key;
	uint32		counter;
	bool		ok;

	if (adlen < AUTHDATA_MIN_LEN || adlen > AUTHDATA_MAX_LEN ||
		cdlen > CLIENTDATA_MAX_LEN || siglen == 0 ||
		siglen > SIGNATURE_MAX_LEN ||
		!CoseParseKey((const unsigned char *) VARDATA_ANY(cose),
					  VARSIZE_ANY_EXHDR(cose), &key))
		PG_RETURN_INT64(ASSERT_MALFORMED);

	CryptoInit();
	crypto_hash_sha256(rp_hash, (const unsigned char *) VARDATA_ANY(rp_id),
					   VARSIZE_ANY_EXHDR(rp_id));
	if (!CryptoEqual(ad, rp_hash, sizeof(rp_hash)))
		PG_RETURN_INT64(ASSERT_RP_ID);
	if ((ad[32] & AUTHDATA_FLAG_UP) == 0)
		PG_RETURN_INT64(ASSERT_NOT_PRESENT);

	/* the signed message: authenticatorData || SHA-256(clientDataJSON) */
	msg = palloc(adlen + crypto_hash_sha256_BYTES);
	memcpy(msg, ad, adlen);
	crypto_hash_sha256(msg + adlen,
					   (const unsigned char *) VARDATA_ANY(clientdata), cdlen);

	if (key.alg == COSE_ALG_EDDSA)
		ok = EddsaVerify(&key, msg, adlen + crypto_hash_sha256_BYTES,
						 (const unsigned char *) VARDATA_ANY(sig), siglen);
	else
		ok = Es256Verify(&key, msg, adlen + crypto_hash_sha256_BYTES,
						 (const unsigned char *) VARDATA_ANY(sig), siglen);
	pfree(msg);
	if (!ok)
		PG_RETURN_INT64(ASSERT_SIGNATURE);

	counter = ((uint32) ad[33] << 24) | ((uint32) ad[34] << 16) |
		((uint32) ad[35] << 8) | (uint32) ad[36];
	PG_RETURN_INT64((int64) counter);
}

/*
 * authctx._webauthn_b64url_decode(text) → bytea
 *
 * clientDataJSON carries the challenge in base64url without padding; only
 * the canonical encoding is accepted (libsodium refuses padding, other
 * alphabets, whitespace and non-zero spare bits), so that one challenge has
 * one spelling.  NULL when the text is not such an encoding.
 */
Datum
authctx_webauthn_b64url_decode(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	size_t		inlen = VARSIZE_ANY_EXHDR(in);
	size_t		maxlen = inlen / 4 * 3 + 3;
	size_t		outlen = 0;
	const char *end = NULL;
	bytea	   *out;

	if (inlen > CHALLENGE_B64_MAX)
		PG_RETURN_NULL();
	out = (bytea *) palloc(VARHDRSZ + maxlen);
	CryptoInit();
	if (sodium_base642bin((unsigned char *) VARDATA(out), maxlen,
						  VARDATA_ANY(in), inlen, NULL, &outlen, &end,
						  sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
		end != VARDATA_ANY(in) + inlen)
		PG_RETURN_NULL();
	SET_VARSIZE(out, VARHDRSZ + outlen);
	PG_RETURN_BYTEA_P(out);
}

/* Define the WebAuthn settings. */
void
WebauthnInit(void)
{
	DefineCustomIntVariable("authctx.webauthn_challenge_ttl",
							"How long a WebAuthn challenge stays valid after webauthn_challenge() issues it.",
							NULL,
							&authctx_webauthn_challenge_ttl,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}
