/*-------------------------------------------------------------------------
 *
 * pkey.h
 *		Public keys and signature checks over libsodium and libcrypto.
 *
 * Plain C (no PostgreSQL dependency), shared by the JWT verifier and, in
 * time, WebAuthn: building Ed25519, P-256 and RSA public keys from their
 * raw parts, validating them, and verifying EdDSA, ES256 (raw r||s as in
 * JWS, or DER as in WebAuthn) and RS256 signatures.  See pkey.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_PKEY_H
#define AUTHCTX_PKEY_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

#define PKEY_ED25519_LEN	32	/* Ed25519 public key */
#define PKEY_ED25519_SIG_LEN 64
#define PKEY_P256_COORD_LEN 32
#define PKEY_P256_POINT_LEN 65	/* 0x04 || x || y */
#define PKEY_ES256_RAW_LEN	64	/* r || s */
#define PKEY_RSA_MIN_BITS	2048
#define PKEY_RSA_MAX_BITS	8192
#define PKEY_DER_MAX		1200	/* SubjectPublicKeyInfo of RSA-8192 */

extern bool PkeyEd25519Valid(const unsigned char *pk);
extern bool PkeyEd25519Verify(const unsigned char *pk,
							  const unsigned char *msg, size_t msglen,
							  const unsigned char *sig, size_t siglen);
extern EVP_PKEY *PkeyP256FromPoint(const unsigned char *point, bool full_check);
extern size_t PkeyBits(const unsigned char *v, size_t len);
extern EVP_PKEY *PkeyRsaFromParts(const unsigned char *n, size_t nlen,
								  const unsigned char *e, size_t elen);
extern EVP_PKEY *PkeyRsaFromDer(const unsigned char *der, size_t len);
extern size_t PkeyToDer(EVP_PKEY *pkey, unsigned char *out, size_t outmax);
extern int	PkeyRsaBits(EVP_PKEY *pkey);
extern bool PkeyEs256VerifyRaw(EVP_PKEY *pkey,
							   const unsigned char *msg, size_t msglen,
							   const unsigned char *sig, size_t siglen);
extern bool PkeyEs256VerifyDer(EVP_PKEY *pkey,
							   const unsigned char *msg, size_t msglen,
							   const unsigned char *sig, size_t siglen);
extern bool PkeyRs256Verify(EVP_PKEY *pkey,
							const unsigned char *msg, size_t msglen,
							const unsigned char *sig, size_t siglen);
extern void PkeyFree(EVP_PKEY *pkey);

#endif							/* AUTHCTX_PKEY_H */
