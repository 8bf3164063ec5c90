/*-------------------------------------------------------------------------
 *
 * jwk.c
 *		JWK and JWK Set parsing (RFC 7517, 7518, 8037), in plain C.
 *
 * An issuer registers its key set as published at its jwks_uri:
 * {"keys": [jwk, ...]}, at most JWKS_MAX_KEYS keys, strict JSON (sjson.c).
 * Members of the set other than "keys" are ignored, as RFC 7517 asks.
 * Each key ends in one of three ways:
 *
 *	usable		OKP/Ed25519 (EdDSA), EC/P-256 (ES256) or RSA of 2048 to 8192
 *				bits (RS256), with valid public parts;
 *	skipped		well formed but not for us: another key type or curve
 *				(EC P-384, OKP X25519...), an "alg" other than the one we
 *				would verify with for that key (RS384, PS256, RSA-OAEP...),
 *				"use" other than "sig", or "key_ops" without "verify".  An
 *				OpenID provider's set often holds such keys beside its
 *				signing keys (Keycloak publishes an RSA-OAEP "enc" key), so
 *				they do not refuse the set; they are simply never used;
 *	refused		private or secret material (d, p, q, dp, dq, qi, oth, k, or
 *				an "oct" key), a malformed member, an invalid public key, an
 *				RSA modulus out of range, or a kid used by an earlier usable
 *				key.  The caller refuses the whole set.
 *
 * Strictness for the keys we use: "kid", when present, is a string of 1 to
 * 255 bytes without control characters (it names the key in messages);
 * "kty", "crv", "use", "alg" are strings and "key_ops" an array of
 * strings; x, y, n, e are canonical unpadded base64url; Ed25519 x and
 * P-256 x and y are exactly 32 bytes (RFC 7518 section 6.2.1.2 requires
 * the full length); n has no leading zero byte (section 6.3.1.1); members
 * that belong to another key type (y on an OKP key, n on an EC key, crv on
 * an RSA key) are refused.  The public part is validated with the
 * libraries (pkey.c): Ed25519 points canonical and of large order, P-256
 * points on the curve, RSA keys through EVP_PKEY_public_check.  Other
 * members (x5c, x5t, x5u...) are ignored: certificates are not checked
 * and not needed.
 *
 * The stored form of a usable key is what verification needs without
 * parsing JSON again: the 32-byte Ed25519 key, the 65-byte uncompressed
 * P-256 point, or the RSA key's DER SubjectPublicKeyInfo.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "jwk.h"

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

/* Members that carry private or secret key material. */
static const char *const jwk_private_members[] = {
	"d", "p", "q", "dp", "dq", "qi", "oth", "k"
};

/* Public members of each key type, refused on the others. */
static const char *const jwk_okp_foreign[] = {"y", "n", "e"};
static const char *const jwk_ec_foreign[] = {"n", "e"};
static const char *const jwk_rsa_foreign[] = {"crv", "x", "y"};

/* A name for each key type. */
const char *
JwkKtyName(JwkKty kty)
{
	switch (kty)
	{
		case JWK_KTY_OKP:
			return "OKP";
		case JWK_KTY_EC:
			return "EC";
		case JWK_KTY_RSA:
			return "RSA";
		case JWK_KTY_UNKNOWN:
			break;
	}
	return "unknown";
}

/* A name for each key status: tests and diagnostics. */
const char *
JwkStatusName(JwkStatus status)
{
	switch (status)
	{
		case JWK_OK:
			return "ok";
		case JWK_SKIP_TYPE:
			return "unsupported key type";
		case JWK_SKIP_ALG:
			return "unsupported algorithm";
		case JWK_SKIP_USE:
			return "not a signature key";
		case JWK_ERR_NOT_OBJECT:
			return "not an object";
		case JWK_ERR_PRIVATE:
			return "private key material";
		case JWK_ERR_KID:
			return "bad kid";
		case JWK_ERR_MALFORMED:
			return "malformed";
		case JWK_ERR_INVALID:
			return "invalid public key";
		case JWK_ERR_RSA_SIZE:
			return "RSA key size";
		case JWK_ERR_DUPLICATE_KID:
			return "duplicate kid";
	}
	return "unknown";
}

/* Record a key's status and the member it concerns; returns the status. */
static JwkStatus
JwkSet(JwkKey *key, JwkStatus status, const char *member)
{
	key->status = status;
	key->member = member;
	return status;
}

/* Is member name present in the object? */
static bool
JwkHas(const SjsonDoc *doc, uint32_t node, const char *name)
{
	return SjsonGet(doc, node, name) >= 0;
}

/* The first of names present in the object, or NULL. */
static const char *
JwkForeign(const SjsonDoc *doc, uint32_t node, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (JwkHas(doc, node, names[i]))
			return names[i];
	return NULL;
}

/*
 * Read member name, a string: 1 when present and a string, 0 when absent,
 * -1 when present with another type.
 */
static int
JwkString(const SjsonDoc *doc, uint32_t node, const char *name, int32_t *value)
{
	*value = SjsonGet(doc, node, name);
	if (*value < 0)
		return 0;
	return doc->nodes[*value].type == SJSON_STRING ? 1 : -1;
}

/*
 * Decode member name (base64url) into out; false when it is absent, not a
 * string, not canonical, longer than outmax, or (exact > 0) not exactly
 * exact bytes long.
 */
static bool
JwkBytes(const SjsonDoc *doc, uint32_t node, const char *name,
		 unsigned char *out, size_t outmax, size_t exact, size_t *outlen)
{
	int32_t		v;

	if (JwkString(doc, node, name, &v) != 1)
		return false;
	if (!JwsB64Decode(SjsonStr(doc, (uint32_t) v), doc->nodes[v].slen,
					  out, outmax, outlen))
		return false;
	return *outlen > 0 && (exact == 0 || *outlen == exact);
}

/* Read the kid, if any: a string of 1 to JWK_KID_MAX printable bytes. */
static bool
JwkReadKid(const SjsonDoc *doc, uint32_t node, JwkKey *key)
{
	int32_t		v;
	int			r = JwkString(doc, node, "kid", &v);
	const unsigned char *s;
	size_t		len;

	if (r == 0)
		return true;
	if (r < 0)
		return false;
	s = (const unsigned char *) SjsonStr(doc, (uint32_t) v);
	len = doc->nodes[v].slen;
	if (len == 0 || len > JWK_KID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return false;
	memcpy(key->kid, s, len);
	key->kid[len] = '\0';
	key->has_kid = true;
	return true;
}

/*
 * Decide which algorithm a key of type kty (and curve crv) would verify:
 * the key's type and algorithm, or a skip/refusal status.
 */
static JwkStatus
JwkReadType(const SjsonDoc *doc, uint32_t node, JwkKey *key)
{
	int32_t		kty;
	int32_t		crv;
	int			r;

	if (JwkString(doc, node, "kty", &kty) != 1)
		return JwkSet(key, JWK_ERR_MALFORMED, "kty");
	if (SjsonStrEq(doc, (uint32_t) kty, "oct", 3))
		return JwkSet(key, JWK_ERR_PRIVATE, "k");	/* a shared secret */
	if (SjsonStrEq(doc, (uint32_t) kty, "RSA", 3))
	{
		key->kty = JWK_KTY_RSA;
		key->alg = JWS_ALG_RS256;
		return JWK_OK;
	}
	if (SjsonStrEq(doc, (uint32_t) kty, "OKP", 3))
		key->kty = JWK_KTY_OKP;
	else if (SjsonStrEq(doc, (uint32_t) kty, "EC", 2))
		key->kty = JWK_KTY_EC;
	else
		return JwkSet(key, JWK_SKIP_TYPE, "kty");

	r = JwkString(doc, node, "crv", &crv);
	if (r != 1)
		return JwkSet(key, JWK_ERR_MALFORMED, "crv");
	if (key->kty == JWK_KTY_OKP && SjsonStrEq(doc, (uint32_t) crv, "Ed25519", 7))
		key->alg = JWS_ALG_EDDSA;
	else if (key->kty == JWK_KTY_EC && SjsonStrEq(doc, (uint32_t) crv, "P-256", 5))
		key->alg = JWS_ALG_ES256;
	else
		return JwkSet(key, JWK_SKIP_TYPE, "crv");
	return JWK_OK;
}

/* Apply "use", "key_ops" and "alg": is this key meant for our algorithm? */
static JwkStatus
JwkReadPurpose(const SjsonDoc *doc, uint32_t node, JwkKey *key)
{
	int32_t		v;
	int			r;
	const char *alg = JwsAlgName(key->alg);

	r = JwkString(doc, node, "use", &v);
	if (r < 0)
		return JwkSet(key, JWK_ERR_MALFORMED, "use");
	if (r > 0 && !SjsonStrEq(doc, (uint32_t) v, "sig", 3))
		return JwkSet(key, JWK_SKIP_USE, "use");

	v = SjsonGet(doc, node, "key_ops");
	if (v >= 0)
	{
		uint32_t	e;
		bool		verify = false;

		if (doc->nodes[v].type != SJSON_ARRAY)
			return JwkSet(key, JWK_ERR_MALFORMED, "key_ops");
		e = SjsonFirst((uint32_t) v);
		for (uint32_t i = 0; i < doc->nodes[v].count; i++)
		{
			if (doc->nodes[e].type != SJSON_STRING)
				return JwkSet(key, JWK_ERR_MALFORMED, "key_ops");
			if (SjsonStrEq(doc, e, "verify", 6))
				verify = true;
			e = SjsonNext(doc, e);
		}
		if (!verify)
			return JwkSet(key, JWK_SKIP_USE, "key_ops");
	}

	r = JwkString(doc, node, "alg", &v);
	if (r < 0)
		return JwkSet(key, JWK_ERR_MALFORMED, "alg");
	if (r > 0)
	{
		if (!SjsonStrEq(doc, (uint32_t) v, alg, strlen(alg)))
			return JwkSet(key, JWK_SKIP_ALG, "alg");
		key->alg_named = true;
	}
	return JWK_OK;
}

/* Read and validate the public parts of a usable key into key->pub. */
static JwkStatus
JwkReadMaterial(const SjsonDoc *doc, uint32_t node, JwkKey *key)
{
	unsigned char x[PKEY_P256_COORD_LEN];
	unsigned char y[PKEY_P256_COORD_LEN];
	unsigned char n[2 * PKEY_RSA_MAX_BITS / 8];	/* room to see it is too long */
	unsigned char e[8];
	size_t		len,
				nlen,
				elen;
	EVP_PKEY   *pkey;
	const char *foreign;

	switch (key->kty)
	{
		case JWK_KTY_OKP:
			if ((foreign = JwkForeign(doc, node, jwk_okp_foreign, lengthof(jwk_okp_foreign))) != NULL)
				return JwkSet(key, JWK_ERR_MALFORMED, foreign);
			if (!JwkBytes(doc, node, "x", key->pub, sizeof(key->pub),
						  PKEY_ED25519_LEN, &len))
				return JwkSet(key, JWK_ERR_MALFORMED, "x");
			if (!PkeyEd25519Valid(key->pub))
				return JwkSet(key, JWK_ERR_INVALID, "x");
			key->publen = PKEY_ED25519_LEN;
			return JWK_OK;

		case JWK_KTY_EC:
			if ((foreign = JwkForeign(doc, node, jwk_ec_foreign, lengthof(jwk_ec_foreign))) != NULL)
				return JwkSet(key, JWK_ERR_MALFORMED, foreign);
			if (!JwkBytes(doc, node, "x", x, sizeof(x), sizeof(x), &len))
				return JwkSet(key, JWK_ERR_MALFORMED, "x");
			if (!JwkBytes(doc, node, "y", y, sizeof(y), sizeof(y), &len))
				return JwkSet(key, JWK_ERR_MALFORMED, "y");
			key->pub[0] = 0x04;
			memcpy(key->pub + 1, x, sizeof(x));
			memcpy(key->pub + 1 + sizeof(x), y, sizeof(y));
			pkey = PkeyP256FromPoint(key->pub, true);
			if (pkey == NULL)
				return JwkSet(key, JWK_ERR_INVALID, "x");
			PkeyFree(pkey);
			key->publen = PKEY_P256_POINT_LEN;
			return JWK_OK;

		case JWK_KTY_RSA:
			if ((foreign = JwkForeign(doc, node, jwk_rsa_foreign, lengthof(jwk_rsa_foreign))) != NULL)
				return JwkSet(key, JWK_ERR_MALFORMED, foreign);
			if (!JwkBytes(doc, node, "n", n, sizeof(n), 0, &nlen) || n[0] == 0)
				return JwkSet(key, JWK_ERR_MALFORMED, "n");
			if (PkeyBits(n, nlen) < PKEY_RSA_MIN_BITS ||
				PkeyBits(n, nlen) > PKEY_RSA_MAX_BITS)
				return JwkSet(key, JWK_ERR_RSA_SIZE, "n");
			if (!JwkBytes(doc, node, "e", e, sizeof(e), 0, &elen) || e[0] == 0)
				return JwkSet(key, JWK_ERR_MALFORMED, "e");
			pkey = PkeyRsaFromParts(n, nlen, e, elen);
			if (pkey == NULL)
				return JwkSet(key, JWK_ERR_INVALID, "n");
			key->publen = PkeyToDer(pkey, key->pub, sizeof(key->pub));
			PkeyFree(pkey);
			if (key->publen == 0)
				return JwkSet(key, JWK_ERR_INVALID, "n");
			return JWK_OK;

		case JWK_KTY_UNKNOWN:
			break;
	}
	return JwkSet(key, JWK_SKIP_TYPE, "kty");
}

/*
 * Parse the JWK at node of doc into key, in the order that makes the
 * status most useful: private material first (whatever the key type, and
 * named by its kid when that is readable), then kid, type, purpose, and
 * the public parts last.
 */
JwkStatus
JwkParse(const SjsonDoc *doc, uint32_t node, JwkKey *key)
{
	JwkStatus	st;
	bool		kid_ok;

	key->status = JWK_OK;
	key->member = NULL;
	key->kty = JWK_KTY_UNKNOWN;
	key->alg = JWS_ALG_UNKNOWN;
	key->alg_named = false;
	key->has_kid = false;
	key->kid[0] = '\0';
	key->publen = 0;

	if (doc->nodes[node].type != SJSON_OBJECT)
		return JwkSet(key, JWK_ERR_NOT_OBJECT, NULL);
	kid_ok = JwkReadKid(doc, node, key);	/* to name the key, if it can */
	for (size_t i = 0; i < lengthof(jwk_private_members); i++)
		if (JwkHas(doc, node, jwk_private_members[i]))
			return JwkSet(key, JWK_ERR_PRIVATE, jwk_private_members[i]);
	if (!kid_ok)
		return JwkSet(key, JWK_ERR_KID, "kid");
	if ((st = JwkReadType(doc, node, key)) != JWK_OK)
		return st;
	if ((st = JwkReadPurpose(doc, node, key)) != JWK_OK)
		return st;
	return JwkReadMaterial(doc, node, key);
}

/*
 * Parse a JWK Set into keys[0..*nkeys-1], one JwkKey per element of its
 * "keys" array (each with its own status; a usable key whose kid an
 * earlier usable key already has is marked JWK_ERR_DUPLICATE_KID).
 */
JwksStatus
JwksParse(const char *text, size_t len, JwksWork *work, JwkKey *keys,
		  int maxkeys, int *nkeys)
{
	SjsonDoc   *doc = &work->doc;
	int32_t		arr;
	uint32_t	e;
	int			count;

	*nkeys = 0;
	SjsonInit(doc, work->nodes, JWKS_NODES, work->scratch,
			  sizeof(work->scratch), JWKS_DEPTH);
	if (len > JWKS_MAX_TEXT || SjsonParse(doc, text, len) != SJSON_OK)
		return JWKS_ERR_JSON;
	arr = SjsonGet(doc, 0, "keys");
	if (arr < 0 || doc->nodes[arr].type != SJSON_ARRAY)
		return JWKS_ERR_SHAPE;
	count = (int) doc->nodes[arr].count;
	if (count > maxkeys || count > JWKS_MAX_KEYS)
		return JWKS_ERR_TOO_MANY;

	e = SjsonFirst((uint32_t) arr);
	for (int i = 0; i < count; i++)
	{
		JwkParse(doc, e, &keys[i]);
		if (keys[i].status == JWK_OK && keys[i].has_kid)
			for (int j = 0; j < i; j++)
				if (keys[j].status == JWK_OK && keys[j].has_kid &&
					strcmp(keys[j].kid, keys[i].kid) == 0)
				{
					JwkSet(&keys[i], JWK_ERR_DUPLICATE_KID, "kid");
					break;
				}
		e = SjsonNext(doc, e);
	}
	*nkeys = count;
	return JWKS_OK;
}
