/*-------------------------------------------------------------------------
 *
 * pkey.c
 *		Public keys and signature checks over libsodium and libcrypto.
 *
 * authctx writes no cryptography of its own.  This file only assembles
 * library calls, in plain C so that fuzz targets link it as it is:
 *
 *	- Ed25519 (libsodium): a public key is valid when it is a canonical
 *	  encoding of a point on the curve, not of small order
 *	  (crypto_core_ed25519_is_valid_point); crypto_sign_verify_detached
 *	  itself refuses non-canonical S and small-order R and keys.
 *	- P-256 (libcrypto): a key is built from its uncompressed point;
 *	  EVP_PKEY_fromdata decodes the point (which puts it on the curve) and,
 *	  at registration, EVP_PKEY_public_check validates it fully.
 *	- ES256 signatures come in two encodings.  JWS (RFC 7518 section 3.4)
 *	  uses the raw 64-byte r || s; WebAuthn uses DER.  A raw signature
 *	  is accepted only at exactly 64 bytes, with r and s each in
 *	  [1, n - 1] (checked here, before libcrypto sees them), then
 *	  re-encoded as DER for EVP_DigestVerify; libcrypto's DER path refuses
 *	  anything but the canonical DER of such a pair.
 *	  High S is accepted.  ECDSA signatures are malleable: (r, n - s)
 *	  verifies whenever (r, s) does.  JWS does not require low S, and
 *	  common signers (OpenSSL, Go, cloud KMS, python-cryptography) do not
 *	  normalise it, so refusing high S would refuse half of the tokens of
 *	  a legitimate ES256 issuer.  Malleability only matters to code that
 *	  treats a signature's bytes as the identity of a signed message: the
 *	  only such code planned here (the cache of verified tokens) keys on
 *	  the whole token, so a malleated twin is merely a separate entry,
 *	  verified on its own.
 *	- RSA (libcrypto): a key is built from n and e (the JWK form), with n
 *	  of 2048 to 8192 bits, without a leading zero byte, and checked with
 *	  EVP_PKEY_public_check (SP 800-56B section 6.4.2.1 as OpenSSL 3 runs
 *	  it outside FIPS mode: n odd, composite, not a prime power, without
 *	  factors under 752; e odd and greater than 1 (e = 3 is allowed: with
 *	  libcrypto's strict PKCS#1 v1.5 decoding the old e = 3 forgeries do
 *	  not apply)); it is stored as DER SubjectPublicKeyInfo.
 *	  RS256 is RSASSA-PKCS1-v1_5 with SHA-256; the signature must be
 *	  exactly as long as the modulus.
 *
 * No function here raises: failures are false or NULL.  OpenSSL's
 * thread-local error queue is cleared after every use, so that nothing left
 * there is later mistaken for an error of the server's own TLS code.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include <sodium.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "pkey.h"

/* The order n of the P-256 group, big-endian (SEC 2, secp256r1). */
static const unsigned char pkey_p256_order[PKEY_P256_COORD_LEN] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

/* Longest DER encoding of a P-256 ECDSA signature. */
#define PKEY_ES256_DER_MAX	72

/* Is the Ed25519 public key (32 bytes) a canonical point of large order? */
bool
PkeyEd25519Valid(const unsigned char *pk)
{
	if (sodium_init() < 0)
		return false;
	return crypto_core_ed25519_is_valid_point(pk) == 1;
}

/* Verify an Ed25519 signature (exactly 64 bytes) over msg. */
bool
PkeyEd25519Verify(const unsigned char *pk, const unsigned char *msg,
				  size_t msglen, const unsigned char *sig, size_t siglen)
{
	if (siglen != PKEY_ED25519_SIG_LEN || sodium_init() < 0)
		return false;
	return crypto_sign_verify_detached(sig, msg, msglen, pk) == 0;
}

/* Run EVP_PKEY_public_check on pkey; free it and return NULL if it fails. */
static EVP_PKEY *
PkeyChecked(EVP_PKEY *pkey)
{
	EVP_PKEY_CTX *check;

	if (pkey == NULL)
		return NULL;
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (check == NULL || EVP_PKEY_public_check(check) != 1)
	{
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(check);
	return pkey;
}

/* Build a public key of type name (EC, RSA) from params; NULL on failure. */
static EVP_PKEY *
PkeyFromParams(const char *name, OSSL_PARAM *params)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
	EVP_PKEY   *pkey = NULL;

	if (ctx == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

/*
 * Build a P-256 public key from its uncompressed point (0x04 || x || y);
 * NULL when it is not a point of the curve.  full_check adds
 * EVP_PKEY_public_check (registration); keys read back from the registry
 * were checked then.  The caller frees the result with PkeyFree.
 */
EVP_PKEY *
PkeyP256FromPoint(const unsigned char *point, bool full_check)
{
	unsigned char buf[PKEY_P256_POINT_LEN];
	char		group[] = "prime256v1";
	OSSL_PARAM	params[3];
	EVP_PKEY   *pkey;

	if (point[0] != 0x04)
		return NULL;
	memcpy(buf, point, sizeof(buf));
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
												 group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
												  buf, sizeof(buf));
	params[2] = OSSL_PARAM_construct_end();
	pkey = PkeyFromParams("EC", params);
	if (full_check)
		pkey = PkeyChecked(pkey);
	ERR_clear_error();
	return pkey;
}

/* The bit length of the big-endian unsigned integer v (len bytes). */
size_t
PkeyBits(const unsigned char *v, size_t len)
{
	size_t		i = 0;
	size_t		bits;

	while (i < len && v[i] == 0)
		i++;
	if (i == len)
		return 0;
	bits = (len - i) * 8;
	for (unsigned char top = v[i]; (top & 0x80) == 0; top <<= 1)
		bits--;
	return bits;
}

/*
 * Build an RSA public key from the big-endian modulus n and exponent e, as
 * a JWK carries them (see the file header for what is refused).
 */
EVP_PKEY *
PkeyRsaFromParts(const unsigned char *n, size_t nlen,
				 const unsigned char *e, size_t elen)
{
	BIGNUM	   *bn_n = NULL;
	BIGNUM	   *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY   *pkey = NULL;
	size_t		bits;

	if (nlen == 0 || n[0] == 0 || elen == 0 || elen > 8 || e[0] == 0)
		return NULL;
	bits = PkeyBits(n, nlen);
	if (bits < PKEY_RSA_MIN_BITS || bits > PKEY_RSA_MAX_BITS)
		return NULL;

	bn_n = BN_bin2bn(n, (int) nlen, NULL);
	bn_e = BN_bin2bn(e, (int) elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn_n != NULL && bn_e != NULL && bld != NULL &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
		params = OSSL_PARAM_BLD_to_param(bld);
	if (params != NULL)
		pkey = PkeyChecked(PkeyFromParams("RSA", params));
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	ERR_clear_error();
	return pkey;
}

/* The modulus size of an RSA key in bits, 0 for anything else. */
int
PkeyRsaBits(EVP_PKEY *pkey)
{
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA"))
		return 0;
	return EVP_PKEY_get_bits(pkey);
}

/*
 * Read back an RSA key stored as DER SubjectPublicKeyInfo: exactly one
 * structure, of an RSA key of an accepted size.
 */
EVP_PKEY *
PkeyRsaFromDer(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY   *pkey;
	int			bits;

	pkey = d2i_PUBKEY(NULL, &p, (long) len);
	bits = PkeyRsaBits(pkey);
	if (pkey != NULL &&
		(p != der + len || bits < PKEY_RSA_MIN_BITS || bits > PKEY_RSA_MAX_BITS))
	{
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	ERR_clear_error();
	return pkey;
}

/* Write pkey as DER SubjectPublicKeyInfo into out; its length, or 0. */
size_t
PkeyToDer(EVP_PKEY *pkey, unsigned char *out, size_t outmax)
{
	unsigned char *p = out;
	int			len = i2d_PUBKEY(pkey, NULL);

	if (len <= 0 || (size_t) len > outmax || i2d_PUBKEY(pkey, &p) != len)
		len = 0;
	ERR_clear_error();
	return (size_t) len;
}

/* Verify a signature over msg with SHA-256 and pkey's default scheme. */
static bool
PkeyVerifySha256(EVP_PKEY *pkey, const unsigned char *msg, size_t msglen,
				 const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool		ok = false;

	if (md != NULL &&
		EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1)
		ok = (EVP_DigestVerify(md, sig, siglen, msg, msglen) == 1);
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return ok;
}

/* Is the 32-byte big-endian v in [1, n - 1], n the P-256 order? */
static bool
PkeyP256ScalarOk(const unsigned char *v)
{
	unsigned char any = 0;

	for (int i = 0; i < PKEY_P256_COORD_LEN; i++)
		any |= v[i];
	return any != 0 && memcmp(v, pkey_p256_order, PKEY_P256_COORD_LEN) < 0;
}

/* Verify a DER-encoded ECDSA P-256 / SHA-256 signature (WebAuthn's form). */
bool
PkeyEs256VerifyDer(EVP_PKEY *pkey, const unsigned char *msg, size_t msglen,
				   const unsigned char *sig, size_t siglen)
{
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "EC") || siglen == 0 ||
		siglen > PKEY_ES256_DER_MAX)
		return false;
	return PkeyVerifySha256(pkey, msg, msglen, sig, siglen);
}

/*
 * Verify a raw r || s ECDSA P-256 / SHA-256 signature (JWS's form): exactly
 * 64 bytes, r and s in range, re-encoded as DER for libcrypto.
 */
bool
PkeyEs256VerifyRaw(EVP_PKEY *pkey, const unsigned char *msg, size_t msglen,
				   const unsigned char *sig, size_t siglen)
{
	ECDSA_SIG  *es;
	BIGNUM	   *r;
	BIGNUM	   *s;
	unsigned char der[PKEY_ES256_DER_MAX];
	unsigned char *p = der;
	int			derlen = 0;

	if (siglen != PKEY_ES256_RAW_LEN ||
		!PkeyP256ScalarOk(sig) || !PkeyP256ScalarOk(sig + PKEY_P256_COORD_LEN))
		return false;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, PKEY_P256_COORD_LEN, NULL);
	s = BN_bin2bn(sig + PKEY_P256_COORD_LEN, PKEY_P256_COORD_LEN, NULL);
	if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1)
	{
		r = s = NULL;			/* es owns them now */
		if (i2d_ECDSA_SIG(es, NULL) <= PKEY_ES256_DER_MAX)
			derlen = i2d_ECDSA_SIG(es, &p);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	ERR_clear_error();
	if (derlen <= 0)
		return false;
	return PkeyEs256VerifyDer(pkey, msg, msglen, der, (size_t) derlen);
}

/* Verify an RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature over msg. */
bool
PkeyRs256Verify(EVP_PKEY *pkey, const unsigned char *msg, size_t msglen,
				const unsigned char *sig, size_t siglen)
{
	if (PkeyRsaBits(pkey) < PKEY_RSA_MIN_BITS ||
		siglen != (size_t) EVP_PKEY_get_size(pkey))
		return false;
	return PkeyVerifySha256(pkey, msg, msglen, sig, siglen);
}

/* Free a key built here (NULL is fine). */
void
PkeyFree(EVP_PKEY *pkey)
{
	EVP_PKEY_free(pkey);
}
