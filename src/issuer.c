/*-------------------------------------------------------------------------
 *
 * issuer.c
 *		External identity providers: the issuer registry's C side and JWT
 *		verification.
 *
 * An application whose users sign in with an OpenID Connect provider
 * registers the provider as an issuer (src/sql/47_issuer.sql): its exact
 * "iss", the audience its tokens must carry, its key set, an optional
 * tenant claim and a clock leeway.  This file holds:
 *
 *	- authctx._issuer_parse_jwks(jsonb): the key set parsed once, at
 *	  registration (jwk.c, pkey.c), into rows of (kid, kty, alg, public key
 *	  bytes) that the SQL side stores in authctx.issuer_keys; a set with a
 *	  private, malformed or invalid key, or with no usable key, raises 22023
 *	  naming the key (its kid, or its position), never its material;
 *	- IssuerVerify(): the whole check of a compact JWS (jws.c) against the
 *	  registry, for auth_begin (phase 2) and authctx._jwt_verify (its
 *	  internal, ungranted test entry point); IssuerLooksLikeJwt(), the cheap
 *	  shape test that tells a JWT from an authctx token;
 *	- a per-backend cache of registered issuers and their keys, ready to
 *	  verify with (libcrypto keys built once), and its invalidation.
 *
 * Order of checks in IssuerVerify, each failure a JwtStatus that callers
 * turn into the one generic 28000: size and shape -> header (alg in the
 * allow-list, no crit) -> claims (strict JSON, registered claims well
 * typed) -> "iss" is a registered issuer -> a key: the one whose kid the
 * header names, or, without kid, the issuer's only key -> the key's
 * algorithm is the header's -> signature -> "aud" holds the issuer's
 * audience -> exp, nbf, iat against the wall clock, with the issuer's
 * leeway -> the tenant claim, when the issuer names one, is a string.
 * Nothing about the token or a claim ever goes into a message: the reason
 * is returned as a code only (authctx._jwt_reason shows it to superusers,
 * for tests and diagnosis).
 *
 * The key cache and its coherence
 * -------------------------------
 * Verification must not parse JSON or rebuild libcrypto keys on every
 * call, so each backend keeps the issuers it has used in a hash table
 * (keyed by BLAKE2b-256 of the issuer string, which the entry also keeps
 * and compares), filled on a miss by primary-key reads of
 * authctx.issuers and authctx.issuer_keys (fetch.c: no SPI, no privilege
 * check, no write) under a fresh snapshot.  Unknown issuers are not
 * cached, so garbage "iss" values cannot fill memory.
 *
 * A committed key-set change must be honoured by the next verification in
 * every backend.  Statement triggers on both tables (ENABLE ALWAYS) call
 * CacheInvalidateRelcacheByRelid() on the changed table; PostgreSQL sends
 * that message with the commit (and on a hot standby, replays it from the
 * commit record), and every backend runs its relcache callbacks when it
 * next accepts invalidation messages.  Our callback only counts
 * (issuer_inval_count): it may run in the middle of a verification, while
 * a key is in use, so it frees nothing.  IssuerLookup() first calls
 * AcceptInvalidationMessages() (cheap when the queue is empty), then drops
 * the whole cache if the count moved since the last drop.  Why that is
 * enough: a change C that committed before a verification V started has
 * queued its message before V's AcceptInvalidationMessages(), so V drops
 * the cache.  A fill reads with a snapshot taken after that call; a change
 * its snapshot misses became visible after it, hence sends its message
 * after it, and the next lookup drops what the fill stored.  A backend's
 * own uncommitted change is seen too (the callback also runs at command
 * end locally, and again at abort).  A full reset of the invalidation
 * queue calls the callback with InvalidOid, which also counts.  The reads
 * use the latest snapshot, not the transaction's, so that a REPEATABLE
 * READ transaction cannot refill the cache with keys removed since it
 * began.
 *
 * The libcrypto keys (EVP_PKEY) are allocated by OpenSSL, not palloc:
 * they are created only after the entry is in the hash table, by code that
 * cannot raise, and freed when the cache is dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "authctx.h"
#include "jwk.h"
#include "jws.h"
#include "pkey.h"

PG_FUNCTION_INFO_V1(authctx_issuer_parse_jwks);
PG_FUNCTION_INFO_V1(authctx_issuer_invalidate);
PG_FUNCTION_INFO_V1(authctx_jwt_verify);
PG_FUNCTION_INFO_V1(authctx_jwt_reason);

#define ISSUER_DIGEST_LEN	32

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define ISSUER_EPOCH_OFFSET \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/* One verification key, ready to use. */
typedef struct IssuerKey
{
	char	   *kid;			/* NULL when the JWK had none */
	JwsAlg		alg;			/* JWS_ALG_UNKNOWN when the row was unusable */
	unsigned char ed25519[PKEY_ED25519_LEN];	/* EdDSA */
	EVP_PKEY   *pkey;			/* ES256, RS256 (OpenSSL's memory) */
} IssuerKey;

/* One registered issuer, as the cache holds it. */
typedef struct IssuerEntry
{
	unsigned char digest[ISSUER_DIGEST_LEN];	/* hash key */
	char	   *issuer;
	char	   *audience;
	char	   *tenant_claim;	/* NULL: none */
	int64		leeway_us;
	int			nkeys;			/* keys[0..nkeys-1] are filled */
	IssuerKey  *keys;
} IssuerEntry;

static HTAB *issuer_cache = NULL;
static MemoryContext issuer_cache_cxt = NULL;
static uint64 issuer_inval_count = 0;	/* bumped by the relcache callback */
static uint64 issuer_cache_count = 0;	/* its value at the last drop */
static Oid	issuer_relid = InvalidOid;
static Oid	issuer_keys_relid = InvalidOid;
static bool issuer_callback_registered = false;

/* ---------------------------------------------------------------------
 * The key cache.
 * ---------------------------------------------------------------------
 */

/* Relcache callback: note that a registry table changed; free nothing here. */
static void
IssuerRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == issuer_relid || relid == issuer_keys_relid)
		issuer_inval_count++;
}

/* Drop every cached issuer, freeing the libcrypto keys. */
static void
IssuerCacheDrop(void)
{
	if (issuer_cache != NULL)
	{
		HASH_SEQ_STATUS seq;
		IssuerEntry *e;

		hash_seq_init(&seq, issuer_cache);
		while ((e = hash_seq_search(&seq)) != NULL)
			for (int i = 0; i < e->nkeys; i++)
				PkeyFree(e->keys[i].pkey);
		issuer_cache = NULL;
	}
	if (issuer_cache_cxt != NULL)
		MemoryContextReset(issuer_cache_cxt);
}

/* Oid of table name in schema authctx, or InvalidOid. */
static Oid
IssuerRelid(const char *name)
{
	Oid			nsp = get_namespace_oid("authctx", true);

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/* Fill key from one authctx.issuer_keys row; an unusable row stays UNKNOWN. */
static void
IssuerKeyBuild(IssuerKey *key, JwsAlg alg, const bytea *pub)
{
	const unsigned char *p;
	size_t		len;

	key->alg = JWS_ALG_UNKNOWN;
	key->pkey = NULL;
	if (pub == NULL)
		return;
	p = (const unsigned char *) VARDATA_ANY(pub);
	len = VARSIZE_ANY_EXHDR(pub);
	if (alg == JWS_ALG_EDDSA && len == PKEY_ED25519_LEN)
	{
		memcpy(key->ed25519, p, PKEY_ED25519_LEN);
		key->alg = alg;
	}
	else if (alg == JWS_ALG_ES256 && len == PKEY_P256_POINT_LEN)
		key->pkey = PkeyP256FromPoint(p, false);
	else if (alg == JWS_ALG_RS256)
		key->pkey = PkeyRsaFromDer(p, len);
	if (key->pkey != NULL)
		key->alg = alg;
}

/*
 * Read issuer iss and its keys from the tables into a new cache entry, or
 * return NULL when it is not registered.
 */
static IssuerEntry *
IssuerLoad(const char *iss, size_t len, const unsigned char *digest)
{
	static const char *const icols[] = {"audience", "tenant_claim", "leeway"};
	static const char *const kcols[] = {"kid", "alg", "public_key"};
	Oid			eqs[2] = {F_TEXTEQ, F_INT4EQ};
	Datum		keys[2];
	Datum		iv[3];
	bool		in[3];
	Datum		kv[JWKS_MAX_KEYS][3];
	bool		kn[JWKS_MAX_KEYS][3];
	JwsAlg		algs[JWKS_MAX_KEYS];
	bytea	   *pubs[JWKS_MAX_KEYS];
	int			nrows = 0;
	Snapshot	snap;
	IssuerEntry *e;
	Interval   *leeway;
	bool		found;
	MemoryContext old;

	issuer_relid = IssuerRelid("issuers");
	issuer_keys_relid = IssuerRelid("issuer_keys");
	if (!OidIsValid(issuer_relid) || !OidIsValid(issuer_keys_relid))
		return NULL;

	snap = RegisterSnapshot(GetLatestSnapshot());
	keys[0] = PointerGetDatum(cstring_to_text_with_len(iss, (int) len));
	found = FetchRow("issuers", "issuers_pkey", 1, keys, eqs, snap,
					 3, icols, iv, in);
	/* positions are dense from 0 (set_issuer_keys writes them so) */
	while (found && nrows < JWKS_MAX_KEYS)
	{
		keys[1] = Int32GetDatum(nrows);
		if (!FetchRow("issuer_keys", "issuer_keys_pkey", 2, keys, eqs, snap,
					  3, kcols, kv[nrows], kn[nrows]))
			break;
		nrows++;
	}
	UnregisterSnapshot(snap);
	if (!found)
		return NULL;

	/* everything that can fail, before any libcrypto key exists */
	for (int i = 0; i < nrows; i++)
	{
		char	   *alg = kn[i][1] ? NULL : TextDatumGetCString(kv[i][1]);

		algs[i] = alg ? JwsAlgFromName(alg, strlen(alg)) : JWS_ALG_UNKNOWN;
		pubs[i] = kn[i][2] ? NULL : DatumGetByteaPP(kv[i][2]);
	}
	e = hash_search(issuer_cache, digest, HASH_ENTER, &found);
	e->nkeys = 0;
	e->keys = NULL;
	e->issuer = NULL;			/* incomplete until the end */
	old = MemoryContextSwitchTo(issuer_cache_cxt);
	e->audience = TextDatumGetCString(iv[0]);
	e->tenant_claim = in[1] ? NULL : TextDatumGetCString(iv[1]);
	leeway = DatumGetIntervalP(iv[2]);
	e->leeway_us = leeway->time +
		((int64) leeway->month * DAYS_PER_MONTH + leeway->day) * USECS_PER_DAY;
	e->keys = palloc0(sizeof(IssuerKey) * Max(nrows, 1));
	for (int i = 0; i < nrows; i++)
		e->keys[i].kid = kn[i][0] ? NULL : TextDatumGetCString(kv[i][0]);
	e->issuer = pnstrdup(iss, len);
	MemoryContextSwitchTo(old);

	/* no error can be raised from here on */
	for (int i = 0; i < nrows; i++)
	{
		IssuerKeyBuild(&e->keys[i], algs[i], pubs[i]);
		e->nkeys = i + 1;
	}
	return e;
}

/*
 * Apply pending invalidations and return the registry's generation: it
 * moves whenever a committed (or this transaction's own) change to the
 * issuers or their keys has been seen.  jwt.c keeps verified tokens only
 * while it stays the same.
 */
uint64
IssuerGeneration(void)
{
	if (!issuer_callback_registered)
	{
		CacheRegisterRelcacheCallback(IssuerRelcacheCallback, (Datum) 0);
		issuer_callback_registered = true;
	}
	AcceptInvalidationMessages();
	return issuer_inval_count;
}

/*
 * The cache entry of registered issuer iss, loading it on a miss; NULL when
 * iss is not registered.  Applies pending invalidations first.
 */
static IssuerEntry *
IssuerLookup(const char *iss, size_t len)
{
	unsigned char digest[ISSUER_DIGEST_LEN];
	IssuerEntry *e;

	(void) IssuerGeneration();
	if (issuer_cache_count != issuer_inval_count)
	{
		IssuerCacheDrop();
		issuer_cache_count = issuer_inval_count;
	}
	if (issuer_cache_cxt == NULL)
		issuer_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												 "authctx issuer cache",
												 ALLOCSET_SMALL_SIZES);
	if (issuer_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = ISSUER_DIGEST_LEN;
		ctl.entrysize = sizeof(IssuerEntry);
		ctl.hcxt = issuer_cache_cxt;
		issuer_cache = hash_create("authctx issuers", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	CryptoHash(digest, sizeof(digest), iss, len, NULL, 0);
	e = hash_search(issuer_cache, digest, HASH_FIND, NULL);
	if (e != NULL && e->issuer != NULL && strlen(e->issuer) == len &&
		memcmp(e->issuer, iss, len) == 0)
		return e;
	if (e != NULL)
	{
		/* left incomplete by an error, or (never seen) a digest collision */
		for (int i = 0; i < e->nkeys; i++)
			PkeyFree(e->keys[i].pkey);
		hash_search(issuer_cache, digest, HASH_REMOVE, NULL);
	}
	return IssuerLoad(iss, len, digest);
}

/* ---------------------------------------------------------------------
 * Verification.
 * ---------------------------------------------------------------------
 */

/* The key that must have signed t: by kid, else the issuer's only key. */
static const IssuerKey *
IssuerSelectKey(const IssuerEntry *e, const JwsToken *t)
{
	const IssuerKey *key = NULL;

	if (t->has_kid)
	{
		for (int i = 0; i < e->nkeys; i++)
			if (e->keys[i].kid != NULL && strlen(e->keys[i].kid) == t->kid_len &&
				memcmp(e->keys[i].kid, t->kid, t->kid_len) == 0)
			{
				key = &e->keys[i];
				break;
			}
	}
	else if (e->nkeys == 1)
		key = &e->keys[0];
	if (key == NULL || key->alg != t->alg)
		return NULL;
	return key;
}

/* Does t's signature verify with key? */
static bool
IssuerSignatureOk(const IssuerKey *key, const JwsToken *t)
{
	const unsigned char *msg = (const unsigned char *) t->signing_input;

	switch (key->alg)
	{
		case JWS_ALG_EDDSA:
			return PkeyEd25519Verify(key->ed25519, msg, t->signing_input_len,
									 t->sig, t->siglen);
		case JWS_ALG_ES256:
			return PkeyEs256VerifyRaw(key->pkey, msg, t->signing_input_len,
									  t->sig, t->siglen);
		case JWS_ALG_RS256:
			return PkeyRs256Verify(key->pkey, msg, t->signing_input_len,
								   t->sig, t->siglen);
		case JWS_ALG_UNKNOWN:
			break;
	}
	return false;
}

/*
 * Can the database hold every string of the claims?  Valid UTF-8 (sjson.c
 * saw to it) fits a UTF-8 database; any other encoding gets ASCII only.
 */
static bool
IssuerEncodingOk(const SjsonDoc *doc)
{
	if (GetDatabaseEncoding() == PG_UTF8)
		return true;
	for (uint32_t i = 0; i < doc->nnodes; i++)
	{
		const SjsonNode *n = &doc->nodes[i];

		if (n->type != SJSON_STRING)
			continue;
		for (uint32_t j = 0; j < n->slen; j++)
			if ((unsigned char) doc->scratch[n->str + j] >= 0x80)
				return false;
	}
	return true;
}

/* Append the space-separated words of s to list. */
static List *
IssuerWords(List *list, const char *s)
{
	char	   *copy = pstrdup(s);
	char	   *save = NULL;

	for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
		list = lappend(list, pstrdup(w));
	pfree(copy);
	return list;
}

/* The strings of node (a string of words, or an array of strings). */
static List *
IssuerStrings(List *list, const SjsonDoc *doc, int32_t node, bool split)
{
	uint32_t	e;

	if (node < 0)
		return list;
	if (doc->nodes[node].type == SJSON_STRING)
		return split ? IssuerWords(list, SjsonStr(doc, (uint32_t) node)) :
			lappend(list, pstrdup(SjsonStr(doc, (uint32_t) node)));
	e = SjsonFirst((uint32_t) node);
	for (uint32_t i = 0; i < doc->nodes[node].count; i++)
	{
		list = lappend(list, pstrdup(SjsonStr(doc, e)));
		e = SjsonNext(doc, e);
	}
	return list;
}

/* Every check after parsing (see the file header), filling out on success. */
static JwtStatus
IssuerCheck(JwsToken *t, TimestampTz now, IssuerResult *out)
{
	const SjsonDoc *d = &t->claims;
	const JwtClaims *c = &t->c;
	const IssuerEntry *e;
	const IssuerKey *key;
	JwtStatus	st;
	int32_t		tenant = -1;

	e = IssuerLookup(SjsonStr(d, (uint32_t) c->iss), d->nodes[c->iss].slen);
	if (e == NULL)
		return JWT_ERR_ISSUER;
	key = IssuerSelectKey(e, t);
	if (key == NULL)
		return JWT_ERR_KEY;
	if (!IssuerSignatureOk(key, t))
		return JWT_ERR_SIGNATURE;
	if (!JwtAudienceHas(t, e->audience, strlen(e->audience)))
		return JWT_ERR_AUDIENCE;
	st = JwtCheckTimes(t, (int64) now + ISSUER_EPOCH_OFFSET, e->leeway_us);
	if (st != JWT_OK)
		return st;
	if (e->tenant_claim != NULL)
	{
		tenant = SjsonGet(d, 0, e->tenant_claim);
		if (tenant >= 0 && (d->nodes[tenant].type != SJSON_STRING ||
							d->nodes[tenant].slen == 0 ||
							d->nodes[tenant].slen > JWT_MAX_NAME_LEN))
			return JWT_ERR_TENANT_CLAIM;
	}
	if (!IssuerEncodingOk(d))
		return JWT_ERR_ENCODING;

	out->issuer = pstrdup(e->issuer);
	out->subject = pstrdup(SjsonStr(d, (uint32_t) c->sub));
	out->expires_at = (TimestampTz) (c->exp - ISSUER_EPOCH_OFFSET);
	out->has_issued_at = c->has_iat;
	if (c->has_iat)
		out->issued_at = (TimestampTz) (c->iat - ISSUER_EPOCH_OFFSET);
	out->tenant = tenant >= 0 ? pstrdup(SjsonStr(d, (uint32_t) tenant)) : NULL;
	out->kid = key->kid != NULL ? pstrdup(key->kid) : NULL;
	out->alg = JwsAlgName(key->alg);
	out->scopes = IssuerStrings(IssuerStrings(NIL, d, c->scope, true), d, c->scp, true);
	out->amr = IssuerStrings(NIL, d, c->amr, false);
	out->claims = DirectFunctionCall1(jsonb_in, CStringGetDatum(t->claims_json));
	out->claims_text = pstrdup(t->claims_json);
	return JWT_OK;
}

/* The cheap shape test: could this bearer token be a JWT at all? */
bool
IssuerLooksLikeJwt(const char *str, size_t len)
{
	return JwsLooksLikeJwt(str, len);
}

/*
 * Verify a compact JWS against the registry at time now (callers pass the
 * wall clock).  Returns true and fills out, or false with out->reason set;
 * never raises for a bad token.
 */
bool
IssuerVerify(const char *token, size_t len, TimestampTz now, IssuerResult *out)
{
	JwsToken   *t;
	JwtStatus	st;

	memset(out, 0, sizeof(*out));
	AuthctxCheckVersion();
	if (len == 0 || len > JWS_MAX_TOKEN_LEN)
	{
		out->reason = JWT_ERR_LENGTH;
		return false;
	}
	t = palloc(sizeof(JwsToken));
	st = JwsParse(token, len, t);
	out->json_reason = (int) t->json_status;
	if (st == JWT_OK)
		st = IssuerCheck(t, now, out);
	pfree(t);
	out->reason = (int) st;
	return st == JWT_OK;
}

/*
 * Why a token was refused, in words (tests and diagnosis only): the
 * JwtStatus, and for refused JSON the reader's reason.
 */
const char *
IssuerReasonName(const IssuerResult *res)
{
	if (res->reason == JWT_ERR_HEADER_JSON || res->reason == JWT_ERR_CLAIMS_JSON)
		return psprintf("%s: %s", JwtStatusName((JwtStatus) res->reason),
						res->json_reason == SJSON_OK ? "not an object" :
						SjsonStatusName((SjsonStatus) res->json_reason));
	return JwtStatusName((JwtStatus) res->reason);
}

/* ---------------------------------------------------------------------
 * SQL-callable functions.
 * ---------------------------------------------------------------------
 */

/* The one refusal of every bad token: as auth_begin's, nothing more. */
static void
IssuerReject(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("authentication failed"),
			 errhint("The token is invalid, expired or revoked.")));
}

/* The time argument of _jwt_verify / _jwt_reason: given, or the wall clock. */
static TimestampTz
IssuerNowArg(FunctionCallInfo fcinfo)
{
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		return PG_GETARG_TIMESTAMPTZ(1);
	return GetCurrentTimestamp();
}

/* Append "key": value (a JSON string, or null) to buf. */
static void
IssuerJsonString(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ", \"%s\": ", key);
	if (value != NULL)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/* Append "key": [strings] to buf. */
static void
IssuerJsonList(StringInfo buf, const char *key, List *list)
{
	ListCell   *lc;

	appendStringInfo(buf, ", \"%s\": [", key);
	foreach(lc, list)
	{
		if (lc != list_head(list))
			appendStringInfoString(buf, ", ");
		escape_json(buf, (const char *) lfirst(lc));
	}
	appendStringInfoChar(buf, ']');
}

/*
 * authctx._jwt_verify(token text, now timestamptz DEFAULT NULL) → jsonb
 *
 * Phase 1's entry point to IssuerVerify, internal and granted to no one:
 * the verified claims and what auth_begin will use (issuer, subject, times,
 * tenant claim, scopes, amr, the key), or the generic 28000.
 */
Datum
authctx_jwt_verify(PG_FUNCTION_ARGS)
{
	IssuerResult res;
	text	   *tok;
	StringInfoData buf;
	Jsonb	   *claims;

	if (PG_ARGISNULL(0))
		IssuerReject();
	tok = PG_GETARG_TEXT_PP(0);
	if (!IssuerVerify(VARDATA_ANY(tok), VARSIZE_ANY_EXHDR(tok),
					  IssuerNowArg(fcinfo), &res))
		IssuerReject();

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"issuer\": ");
	escape_json(&buf, res.issuer);
	IssuerJsonString(&buf, "subject", res.subject);
	IssuerJsonString(&buf, "expires_at",
					 JsonEncodeDateTime(NULL, TimestampTzGetDatum(res.expires_at),
										TIMESTAMPTZOID, NULL));
	IssuerJsonString(&buf, "issued_at", !res.has_issued_at ? NULL :
					 JsonEncodeDateTime(NULL, TimestampTzGetDatum(res.issued_at),
										TIMESTAMPTZOID, NULL));
	IssuerJsonString(&buf, "tenant", res.tenant);
	IssuerJsonString(&buf, "kid", res.kid);
	IssuerJsonString(&buf, "alg", res.alg);
	IssuerJsonList(&buf, "scopes", res.scopes);
	IssuerJsonList(&buf, "amr", res.amr);
	appendStringInfoString(&buf, ", \"claims\": ");
	claims = DatumGetJsonbP(res.claims);
	JsonbToCString(&buf, &claims->root, VARSIZE(claims));
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * authctx._jwt_reason(token text, now timestamptz DEFAULT NULL) → text
 *
 * Why IssuerVerify refuses a token ('ok' when it does not): for tests,
 * which must fail for the reason they claim to test, and for a superuser
 * diagnosing an integration.  Internal, granted to no one.
 */
Datum
authctx_jwt_reason(PG_FUNCTION_ARGS)
{
	IssuerResult res;
	text	   *tok;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	tok = PG_GETARG_TEXT_PP(0);
	(void) IssuerVerify(VARDATA_ANY(tok), VARSIZE_ANY_EXHDR(tok),
						IssuerNowArg(fcinfo), &res);
	PG_RETURN_TEXT_P(cstring_to_text(IssuerReasonName(&res)));
}

/*
 * Trigger (statement level, on authctx.issuers and authctx.issuer_keys):
 * at commit, every backend drops its cached issuers and keys.
 */
Datum
authctx_issuer_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "authctx._issuer_invalidate() must be called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/* How a key is named in messages: its kid, else its position. */
static char *
IssuerKeyName(const JwkKey *key, int pos)
{
	if (key->has_kid)
		return psprintf("key \"%s\"", key->kid);
	return psprintf("key #%d", pos + 1);
}

/* Raise the 22023 for a key that refuses the whole set (key material never shown). */
static void
IssuerKeyError(const JwkKey *key, int pos)
{
	char	   *name = IssuerKeyName(key, pos);

	switch (key->status)
	{
		case JWK_ERR_NOT_OBJECT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s of the key set is not a JSON object", name)));
			break;
		case JWK_ERR_PRIVATE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s of the key set carries private key material", name),
					 errdetail("It has the private or secret member \"%s\".", key->member),
					 errhint("Register the issuer's public key set (its jwks_uri document) only.")));
			break;
		case JWK_ERR_KID:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key #%d of the key set has an invalid kid", pos + 1),
					 errdetail("A kid is a string of 1 to %d bytes without control characters.",
							   JWK_KID_MAX)));
			break;
		case JWK_ERR_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s of the key set is malformed", name),
					 errdetail("Member \"%s\" is missing, of the wrong type or length, not canonical unpadded base64url, or does not belong to a key of this type.",
							   key->member)));
			break;
		case JWK_ERR_INVALID:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s of the key set is not a valid public key", name),
					 errdetail("Its point is not on its curve, or its RSA modulus or exponent is not acceptable.")));
			break;
		case JWK_ERR_RSA_SIZE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s of the key set is an RSA key of an unsupported size", name),
					 errdetail("RSA keys must have %d to %d bits.",
							   PKEY_RSA_MIN_BITS, PKEY_RSA_MAX_BITS)));
			break;
		case JWK_ERR_DUPLICATE_KID:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s appears twice in the key set", name)));
			break;
		case JWK_OK:
		case JWK_SKIP_TYPE:
		case JWK_SKIP_ALG:
		case JWK_SKIP_USE:
			break;
	}
}

/* Say why a well-formed key of the set will never be used. */
static void
IssuerKeySkipped(const JwkKey *key, int pos)
{
	const char *why = key->status == JWK_SKIP_TYPE ?
	"its key type or curve is not one authctx verifies with" :
	key->status == JWK_SKIP_ALG ?
	"its \"alg\" is not the algorithm authctx verifies with for its key type" :
	"it is not a signature verification key (\"use\" or \"key_ops\")";

	ereport(NOTICE,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("%s of the key set is not used: %s", IssuerKeyName(key, pos), why)));
}

/*
 * authctx._issuer_parse_jwks(jwks jsonb)
 *		→ SETOF (kid text, kty text, alg text, public_key bytea)
 *
 * Registration parses and validates a key set once, here, so that
 * verification never reads JSON: one row per usable key, in the set's
 * order, with the stored form of its public key.  22023 for a set that is
 * not a JWK Set, has too many keys, has any private, malformed or invalid
 * key, or has no usable key; a NOTICE for each key that is skipped.
 */
Datum
authctx_issuer_parse_jwks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	char	   *text;
	JwksWork   *work;
	JwkKey	   *keys;
	int			nkeys;
	int			usable = 0;
	JwksStatus	st;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	MemoryContext old;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	work = palloc(sizeof(JwksWork));
	keys = palloc(sizeof(JwkKey) * JWKS_MAX_KEYS);
	st = JwksParse(text, strlen(text), work, keys, JWKS_MAX_KEYS, &nkeys);
	if (st == JWKS_ERR_TOO_MANY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key set has too many keys"),
				 errdetail("A key set holds at most %d keys.", JWKS_MAX_KEYS)));
	if (st != JWKS_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid key set"),
				 errdetail("A key set is a JWK Set document, {\"keys\": [...]}, of at most %d bytes.",
						   JWKS_MAX_TEXT)));

	for (int i = 0; i < nkeys; i++)
		IssuerKeyError(&keys[i], i);
	for (int i = 0; i < nkeys; i++)
	{
		if (keys[i].status == JWK_OK)
			usable++;
		else
			IssuerKeySkipped(&keys[i], i);
	}
	if (usable == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key set has no usable key"),
				 errdetail("Keys are used for EdDSA (OKP, Ed25519), ES256 (EC, P-256) and RS256 (RSA of %d to %d bits) signatures only.",
						   PKEY_RSA_MIN_BITS, PKEY_RSA_MAX_BITS)));

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTupleDescCopy(tupdesc);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	for (int i = 0; i < nkeys; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false};
		bytea	   *pub;

		if (keys[i].status != JWK_OK)
			continue;
		if (keys[i].has_kid)
			values[0] = CStringGetTextDatum(keys[i].kid);
		else
			nulls[0] = true;
		values[1] = CStringGetTextDatum(JwkKtyName(keys[i].kty));
		values[2] = CStringGetTextDatum(JwsAlgName(keys[i].alg));
		pub = palloc(VARHDRSZ + keys[i].publen);
		SET_VARSIZE(pub, VARHDRSZ + keys[i].publen);
		memcpy(VARDATA(pub), keys[i].pub, keys[i].publen);
		values[3] = PointerGetDatum(pub);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = tupdesc;
	return (Datum) 0;
}
