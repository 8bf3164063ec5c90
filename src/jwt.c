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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

extern Datum authctx_current(PG_FUNCTION_ARGS);

/* The most bytes a token's scopes or amr take in the context. */
#define JWT_LIST_MAX	4096

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
JwtUserLive(const pg_uuid_t *user_id, const IssuerResult *res, Snapshot snap)
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
 * auth_begin's JWT path: false when the token is not shaped like a JWT
 * (the caller goes on with authctx tokens); else verifies it, publishes
 * the context and sets *result to auth_begin's row, or raises.
 */
bool
JwtAuthBegin(FunctionCallInfo fcinfo, Datum *result)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *requested = NULL;
	IssuerResult res;
	char	   *scopes;
	char	   *amr;
	pg_uuid_t	user_id;
	pg_uuid_t	tenant_id;
	bool		has_tenant = false;
	char		role[NAMEDATALEN] = "";
	Snapshot	snap;
	bool		ok;
	Jsonb	   *claims;
	StringInfoData claims_text;

	if (!IssuerLooksLikeJwt(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		return false;
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		requested = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (!IssuerVerify(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
					  GetCurrentTimestamp(), &res) ||
		!JwtJoin(res.scopes, &scopes) || !JwtJoin(res.amr, &amr))
		RequestReject();

	/* the live checks, under one fresh snapshot */
	snap = RegisterSnapshot(GetLatestSnapshot());
	ok = JwtLinkedUser(res.issuer, res.subject, snap, &user_id) &&
		JwtUserLive(&user_id, &res, snap);
	if (ok && requested == NULL && res.tenant == NULL)
		has_tenant = JwtOnlyTenant(&user_id, snap, &tenant_id, role);
	UnregisterSnapshot(snap);
	if (!ok)
		RequestReject();

	if (requested != NULL || res.tenant != NULL)
	{
		SessionRecord rec;

		memset(&rec, 0, sizeof(rec));
		rec.kind = TOKEN_JWT;
		rec.user_id = user_id;
		if (TenantForRequest(&user_id, &rec, requested ? requested : res.tenant,
							 &tenant_id, &has_tenant, role) != TENANT_ALLOWED)
			RequestRefuseTenant();
	}

	RequestWarnIfBypassesRls();

	claims = DatumGetJsonbP(res.claims);
	initStringInfo(&claims_text);
	(void) JsonbToCString(&claims_text, &claims->root, VARSIZE(claims));
	ContextPublish(&user_id, has_tenant ? &tenant_id : NULL, role, NULL,
				   "jwt", res.expires_at, scopes, amr, claims_text.data);
	*result = authctx_current(fcinfo);
	return true;
}
