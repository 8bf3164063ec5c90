/*-------------------------------------------------------------------------
 *
 * jwt.c
 *		auth_begin for JWT access tokens of registered issuers.
 *
 * auth_begin (request.c) hands every bearer token to JwtAuthBegin() first;
 * a token that does not have the shape of a compact JWS goes back to the
 * authctx token path untouched.  A JWT is then:
 *
 *	 verified by issuer.c (signature, iss, aud, exp/nbf/iat with the
 *	 issuer's leeway, strict JSON) -> its scopes and amr checked to fit the
 *	 context -> its (issuer, sub) looked up in authctx.oauth_identities
 *	 (link_identity; never matched by email) -> the user checked live:
 *	 enabled, and the token issued after the user's revocation stamp
 *	 (revoke_user_sessions, disable_user: "iat" later than
 *	 users.sessions_revoked_before; a token without "iat" is refused once
 *	 the user has a stamp) -> the tenant: auth_begin's second argument,
 *	 else the issuer's tenant claim (a slug or uuid), else the user's only
 *	 membership; a named tenant must count the user as a member (42501, as
 *	 for sessions) -> the context published: auth_method 'jwt', no session
 *	 id, expiry "exp", the token's scopes, amr and claims.
 *
 * The live checks read the tables at every call (by primary key, latest
 * snapshot, no SPI, no write, as session.c does), so a disabled user, a
 * removed membership, a revocation or an unlinked identity take effect at
 * the next auth_begin even while the token is within "exp".
 *
 * Every failure is request.c's one generic 28000; nothing about the token
 * or a claim reaches a message.
 *
 * Verified tokens
 * ---------------
 * An application sends the same access token with many requests, and a
 * signature costs tens of microseconds to verify (RSA, ECDSA) where the
 * rest of auth_begin costs a few.  So each backend keeps what verifying a
 * token established (issuer, subject, times, tenant claim, scopes, amr,
 * claims) keyed by the BLAKE2b-256 digest of the whole token, and a
 * repeated token skips decoding, JSON parsing and the signature.  An entry
 * is used only
 *	- while the wall clock is before the token's "exp" (never the leeway),
 *	- while the issuer registry's generation (issuer.c: bumped by the
 *	  commit-time invalidation of authctx.issuers and issuer_keys, the same
 *	  coherence as the key cache) is the one it was verified under: a key
 *	  removed or an issuer removed drops every entry at the next call.
 * What can be revoked is not kept here: the identity link, the user's
 * status and revocation stamp and the membership are checked at every
 * call, as above.  With authctx preloaded, their answer for this token is
 * kept in the shared session cache (cache.c), as an entry of kind 'j'
 * keyed by the first 16 bytes of the token's digest, holding the whole
 * digest as its verifier, the user, the user's only membership and "exp",
 * and under cache.c's commit-time coherence: the entry depends on its
 * user's slot, which every change to the user's row (disable, revocation
 * stamp), to the user's memberships and to the user's identity links
 * (triggers on authctx.oauth_identities) bumps.  A repeated token then
 * reads no table at all; the signature is still never trusted from shared
 * memory (the per-backend cache above holds the verification, and only a
 * backend that verified the token looks for its entry).  The cache holds at most JWT_CACHE_ENTRIES tokens of at most
 * JWT_CACHE_TOKEN_MAX bytes and is emptied when full (no eviction order to
 * maintain; a steady set of tokens refills it at once).  It is per backend,
 * not in shared memory: claims are kilobytes, and a pooled connection sees
 * the same few tokens again and again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

extern Datum authctx_current(PG_FUNCTION_ARGS);

/* The most bytes a token's scopes or amr take in the context. */
#define JWT_LIST_MAX	4096

#define JWT_DIGEST_LEN		32
#define JWT_CACHE_ENTRIES	1024
#define JWT_CACHE_TOKEN_MAX	8192

/* What verifying a token established, as auth_begin uses it. */
typedef struct JwtVerified
{
	char	   *issuer;
	char	   *subject;
	TimestampTz expires_at;
	bool		has_issued_at;
	TimestampTz issued_at;
	char	   *tenant;			/* tenant claim, or NULL */
	char	   *scopes;			/* newline-separated */
	char	   *amr;			/* newline-separated */
	char	   *claims;			/* JSON text */
} JwtVerified;

/* One verified token in this backend's cache. */
typedef struct JwtCacheEntry
{
	unsigned char digest[JWT_DIGEST_LEN];	/* hash key */
	uint64		generation;		/* IssuerGeneration() when verified */
	bool		filled;			/* false: left incomplete by an error */
	JwtVerified v;				/* strings in jwt_cache_cxt */
} JwtCacheEntry;

static HTAB *jwt_cache = NULL;
static MemoryContext jwt_cache_cxt = NULL;

/*
 * Join list (char *) with newlines into a palloc'd string; false when an
 * entry is empty or holds a newline, a ';' (the context's separators) or a
 * control character, or the whole is too long: such a token is refused.
 */
static bool
JwtJoin(List *list, char **out)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, list)
	{
		const char *s = (const char *) lfirst(lc);

		if (*s == '\0')
			return false;
		for (const char *p = s; *p; p++)
			if ((unsigned char) *p < 0x20 || *p == ';' || *p == 0x7f)
				return false;
		if (buf.len > 0)
			appendStringInfoChar(&buf, '\n');
		appendStringInfoString(&buf, s);
		if (buf.len > JWT_LIST_MAX)
			return false;
	}
	*out = buf.data;
	return true;
}

/* The user linked to (issuer, subject), or false when none is. */
static bool
JwtLinkedUser(const char *issuer, const char *subject, Snapshot snap,
			  pg_uuid_t *user_id)
{
	static const char *const cols[] = {"user_id"};
	Datum		keys[2] = {CStringGetTextDatum(issuer), CStringGetTextDatum(subject)};
	Oid			eqs[2] = {F_TEXTEQ, F_TEXTEQ};
	Datum		v[1];
	bool		n[1];

	if (!FetchRow("oauth_identities", "oauth_identities_pkey", 2, keys, eqs, snap,
				  1, cols, v, n) || n[0])
		return false;
	*user_id = *DatumGetUUIDP(v[0]);
	return true;
}

/*
 * May this user act on a token issued at res's "iat"?  Not when disabled,
 * nor when the token was issued at or before the user's revocation stamp
 * (without "iat", not once the user has a stamp).
 */
static bool
JwtUserLive(const pg_uuid_t *user_id, const JwtVerified *res, Snapshot snap)
{
	static const char *const cols[] = {"disabled_at", "sessions_revoked_before"};
	Datum		key = UUIDPGetDatum((pg_uuid_t *) user_id);
	Oid			eq = F_UUID_EQ;
	Datum		v[2];
	bool		n[2];

	if (!FetchRow("users", "users_pkey", 1, &key, &eq, snap, 2, cols, v, n) ||
		!n[0])
		return false;
	if (n[1])
		return true;
	return res->has_issued_at && res->issued_at > DatumGetTimestampTz(v[1]);
}

/* The user's tenant when the user has exactly one membership. */
static bool
JwtOnlyTenant(const pg_uuid_t *user_id, Snapshot snap, pg_uuid_t *tenant_id,
			  char *role)
{
	static const char *const cols[] = {"tenant_id", "role"};
	Datum		key = UUIDPGetDatum((pg_uuid_t *) user_id);
	Oid			eq = F_UUID_EQ;
	Datum		v[2];
	bool		n[2];

	if (FetchRows("memberships", "memberships_user_idx", 1, &key, &eq, snap, 2,
				  2, cols, v, n) != 1 || n[0] || n[1])
		return false;
	*tenant_id = *DatumGetUUIDP(v[0]);
	text_to_cstring_buffer(DatumGetTextPP(v[1]), role, NAMEDATALEN);
	return true;
}

/*
 * The live checks of a verified token, from the shared cache or the tables:
 * the linked user, and the user's only membership (*has_tenant false when
 * the user has none or several).  False: refuse the token.
 */
static bool
JwtLiveUser(const unsigned char *digest, const JwtVerified *res,
			pg_uuid_t *user_id, bool *has_tenant, pg_uuid_t *tenant_id, char *role)
{
	SessionRecord rec;
	pg_uuid_t	id;
	uint64		stamp;
	Snapshot	snap;
	bool		ok;

	memcpy(&id, digest, sizeof(id));
	if (CacheSessionGet(TOKEN_JWT, &id, &rec) &&
		CryptoEqual(rec.verifier, digest, JWT_DIGEST_LEN))
	{
		*user_id = rec.user_id;
		*has_tenant = rec.has_tenant && rec.is_member;
		*tenant_id = rec.tenant_id;
		strlcpy(role, rec.role, NAMEDATALEN);
		return true;
	}

	stamp = CacheStamp();		/* before GetLatestSnapshot() */
	snap = RegisterSnapshot(GetLatestSnapshot());
	ok = JwtLinkedUser(res->issuer, res->subject, snap, user_id) &&
		JwtUserLive(user_id, res, snap);
	*has_tenant = ok && JwtOnlyTenant(user_id, snap, tenant_id, role);
	UnregisterSnapshot(snap);
	if (!ok)
		return false;

	memset(&rec, 0, sizeof(rec));
	rec.kind = TOKEN_JWT;
	rec.id = id;
	rec.user_id = *user_id;
	rec.has_tenant = *has_tenant;
	if (*has_tenant)
	{
		rec.tenant_id = *tenant_id;
		strlcpy(rec.role, role, NAMEDATALEN);
	}
	rec.has_verifier = true;
	memcpy(rec.verifier, digest, JWT_DIGEST_LEN);
	rec.expires_at = res->expires_at;
	rec.last_seen_at = DT_NOEND;
	rec.member_known = true;
	rec.is_member = *has_tenant;
	CacheSessionPut(TOKEN_JWT, &id, &rec, stamp);
	return true;
}

/* Drop every cached token (memory and all). */
static void
JwtCacheReset(void)
{
	if (jwt_cache_cxt != NULL)
		MemoryContextReset(jwt_cache_cxt);
	jwt_cache = NULL;
}

/* The cached verification of the token with this digest, if still usable. */
static const JwtVerified *
JwtCacheGet(const unsigned char *digest, uint64 generation, TimestampTz now)
{
	JwtCacheEntry *e;

	if (jwt_cache == NULL)
		return NULL;
	e = hash_search(jwt_cache, digest, HASH_FIND, NULL);
	if (e == NULL)
		return NULL;
	if (e->filled && e->generation == generation && now < e->v.expires_at)
		return &e->v;
	hash_search(jwt_cache, digest, HASH_REMOVE, NULL);	/* its strings stay
														 * until the next reset */
	return NULL;
}

/* Remember a verified token (copied into the cache's memory). */
static void
JwtCachePut(const unsigned char *digest, uint64 generation, const JwtVerified *v)
{
	JwtCacheEntry *e;
	MemoryContext old;

	if (jwt_cache_cxt == NULL)
		jwt_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
											  "authctx verified JWTs",
											  ALLOCSET_DEFAULT_SIZES);
	if (jwt_cache != NULL && hash_get_num_entries(jwt_cache) >= JWT_CACHE_ENTRIES)
		JwtCacheReset();
	if (jwt_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = JWT_DIGEST_LEN;
		ctl.entrysize = sizeof(JwtCacheEntry);
		ctl.hcxt = jwt_cache_cxt;
		jwt_cache = hash_create("authctx verified JWTs", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(jwt_cache, digest, HASH_ENTER, NULL);
	e->filled = false;
	e->generation = generation;
	old = MemoryContextSwitchTo(jwt_cache_cxt);
	e->v.issuer = pstrdup(v->issuer);
	e->v.subject = pstrdup(v->subject);
	e->v.expires_at = v->expires_at;
	e->v.has_issued_at = v->has_issued_at;
	e->v.issued_at = v->issued_at;
	e->v.tenant = v->tenant ? pstrdup(v->tenant) : NULL;
	e->v.scopes = pstrdup(v->scopes);
	e->v.amr = pstrdup(v->amr);
	e->v.claims = pstrdup(v->claims);
	MemoryContextSwitchTo(old);
	e->filled = true;
}

/*
 * Verify the token by issuer.c into *v (palloc'd), or raise the generic
 * 28000.
 */
static void
JwtVerify(const char *token, size_t len, TimestampTz now, JwtVerified *v)
{
	IssuerResult res;

	if (!IssuerVerify(token, len, now, &res) ||
		!JwtJoin(res.scopes, &v->scopes) || !JwtJoin(res.amr, &v->amr))
		RequestReject();
	v->issuer = res.issuer;
	v->subject = res.subject;
	v->expires_at = res.expires_at;
	v->has_issued_at = res.has_issued_at;
	v->issued_at = res.issued_at;
	v->tenant = res.tenant;
	v->claims = res.claims_text;
}

/*
 * auth_begin's JWT path: false when the token is not shaped like a JWT
 * (the caller goes on with authctx tokens); else verifies it, publishes
 * the context and sets *result to auth_begin's row, or raises.
 */
bool
JwtAuthBegin(FunctionCallInfo fcinfo, Datum *result)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *token = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	const char *requested = NULL;
	unsigned char digest[JWT_DIGEST_LEN];
	uint64		generation;
	TimestampTz now;
	const JwtVerified *cached;
	JwtVerified fresh;
	JwtVerified res;
	pg_uuid_t	user_id;
	pg_uuid_t	tenant_id;
	bool		has_tenant = false;
	char		role[NAMEDATALEN] = "";

	if (!IssuerLooksLikeJwt(token, len))
		return false;
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		requested = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/* verified already, under the same keys, and not expired? */
	now = GetCurrentTimestamp();
	generation = IssuerGeneration();
	CryptoHash(digest, sizeof(digest), token, len, NULL, 0);
	cached = JwtCacheGet(digest, generation, now);
	if (cached != NULL)
		res = *cached;
	else
	{
		JwtVerify(token, len, now, &fresh);
		if (len <= JWT_CACHE_TOKEN_MAX)
			JwtCachePut(digest, generation, &fresh);
		res = fresh;
	}

	/* the live checks */
	if (!JwtLiveUser(digest, &res, &user_id, &has_tenant, &tenant_id, role))
		RequestReject();

	if (requested != NULL || res.tenant != NULL)
	{
		SessionRecord rec;

		has_tenant = false;
		role[0] = '\0';
		memset(&rec, 0, sizeof(rec));
		rec.kind = TOKEN_JWT;
		rec.user_id = user_id;
		if (TenantForRequest(&user_id, &rec, requested ? requested : res.tenant,
							 &tenant_id, &has_tenant, role) != TENANT_ALLOWED)
			RequestRefuseTenant();
	}

	RequestWarnIfBypassesRls();

	ContextPublish(&user_id, has_tenant ? &tenant_id : NULL, role, NULL,
				   "jwt", res.expires_at, res.scopes, res.amr, res.claims);
	*result = authctx_current(fcinfo);
	return true;
}
