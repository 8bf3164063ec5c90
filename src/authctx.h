/*-------------------------------------------------------------------------
 *
 * authctx.h
 *		Interfaces between authctx's modules.
 *
 * Each module of ARCHITECTURE.md (identity, token, session, request,
 * tenant, context, cache, worker, audit, crypto) exports its entry points
 * here.  The layering rule: identity, token, context, cache, audit and
 * crypto never call request or tenant.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_H
#define AUTHCTX_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "parse.h"

/* ---- crypto.c ---- */
extern void CryptoInit(void);
extern void CryptoRandomBytes(void *buf, size_t len);
extern void CryptoHash(unsigned char *out, size_t outlen,
					   const void *in, size_t inlen,
					   const unsigned char *key, size_t keylen);
extern bool CryptoEqual(const void *a, const void *b, size_t len);
extern void CryptoZero(void *buf, size_t len);

/* ---- fetch.c ---- */
#include "utils/snapshot.h"
extern bool FetchRow(const char *relname, const char *idxname, int nkeys,
					 const Datum *keys, const Oid *eqprocs, Snapshot snap,
					 int ncols, const char *const *cols, Datum *values, bool *nulls);
extern bool FetchRowAtLeast(const char *relname, const char *idxname, Datum key,
							Oid geproc, Snapshot snap, int ncols,
							const char *const *cols, Datum *values, bool *nulls);

/* ---- token.c (the wire formats are in parse.h) ---- */
#define AUTHCTX_TOKEN_HASH_LEN		32	/* stored verifier: BLAKE2b-256 */

#define DatumGetAuthctxToken(x)		((AuthctxToken *) DatumGetPointer(x))
#define AuthctxTokenGetDatum(x)		PointerGetDatum(x)
#define PG_GETARG_AUTHCTX_TOKEN(n)	DatumGetAuthctxToken(PG_GETARG_DATUM(n))

extern void TokenInit(void);
extern bool TokenParse(const char *str, size_t len, AuthctxToken *out);
extern void TokenVerifier(const AuthctxToken *tok, unsigned char *out);

/* ---- context.c ---- */
/* Length of a uuid's text form, 8-4-4-4-12. */
#define AUTHCTX_UUID_TEXT_LEN	36
extern const char *ContextUuidText(const pg_uuid_t *u, char *buf);

typedef struct AuthctxContext
{
	bool		valid;			/* a context is published */
	pg_uuid_t	user_id;
	bool		has_tenant;
	pg_uuid_t	tenant_id;
	char		role[NAMEDATALEN];
	pg_uuid_t	session_id;
	char		auth_method[16];	/* session | api_key | admin */
	TimestampTz expires_at;
	char	   *scopes;			/* comma-separated, or NULL */
} AuthctxContext;

extern void ContextInit(void);
extern void ContextPublish(const pg_uuid_t *user_id, const pg_uuid_t *tenant_id,
						   const char *role, const pg_uuid_t *session_id,
						   const char *auth_method, TimestampTz expires_at,
						   const char *scopes);
extern void ContextClear(void);
extern void ContextSetAdminBypass(const char *reason);
extern bool ContextAdminBypass(void);
extern const AuthctxContext *ContextCurrent(void);

/* ---- worker.c ---- */
extern void WorkerInit(void);
extern bool WorkerRunAutonomous(const char *kind, const char *payload_json);
extern void WorkerNoteSeen(char kind, const pg_uuid_t *id, TimestampTz when);

/* ---- cache.c ---- (lookups declared after SessionRecord, below) */
extern int	authctx_cache_size;
extern void CacheInit(void);

/* ---- session.c ---- */
/* What the request path needs to know about one session or API key. */
typedef struct SessionRecord
{
	char		kind;			/* TOKEN_SESSION or TOKEN_API_KEY */
	pg_uuid_t	id;
	pg_uuid_t	user_id;
	bool		has_tenant;
	pg_uuid_t	tenant_id;
	bool		has_verifier;
	unsigned char verifier[AUTHCTX_TOKEN_HASH_LEN];
	TimestampTz expires_at;		/* DT_NOEND when it never expires */
	TimestampTz last_seen_at;	/* last_seen_at / last_used_at */
	bool		revoked;
	bool		user_disabled;
	char		scopes[1024];	/* API keys: newline-separated */
	bool		member_known;	/* is_member and role below were looked up */
	bool		is_member;		/* the user is a member of tenant_id */
	char		role[NAMEDATALEN];	/* the user's role in tenant_id */
	bool		from_cache;		/* answered by the shared-memory cache */
} SessionRecord;

extern int	authctx_session_lifetime;
extern int	authctx_session_idle_timeout;
extern int	authctx_last_seen_interval;
extern bool SessionLookup(char kind, const pg_uuid_t *id, bool tables_only,
						  SessionRecord *rec);
extern bool SessionMemberRole(const pg_uuid_t *tenant_id, const pg_uuid_t *user_id,
							  Snapshot snap, char *role);

/* cache.c: the shared-memory cache (no-ops unless preloaded) */
extern uint64 CacheStamp(void);
extern bool CacheSessionGet(char kind, const pg_uuid_t *id, SessionRecord *rec);
extern void CacheSessionPut(char kind, const pg_uuid_t *id,
							const SessionRecord *rec, uint64 stamp);
extern bool CacheSessionSeen(const SessionRecord *rec, TimestampTz now);
extern bool CacheMemberGet(const pg_uuid_t *user_id, const pg_uuid_t *tenant_uuid,
						   const char *slug, pg_uuid_t *tenant_id, char *role);
extern void CacheMemberPut(const pg_uuid_t *user_id, const pg_uuid_t *tenant_uuid,
						   const char *slug, const pg_uuid_t *tenant_id,
						   const char *role, uint64 stamp);

/* ---- tenant.c ---- */
extern bool TenantForRequest(const pg_uuid_t *user_id, const SessionRecord *rec,
							 const char *requested, pg_uuid_t *tenant_id,
							 bool *has_tenant, char *role);

/* ---- request.c, tenant.c, session.c, identity.c, audit.c ---- */
extern void RequestInit(void);
extern void RedactInit(void);
extern void TenantInit(void);
extern void SessionInit(void);
extern void IdentityInit(void);
extern void AuditInit(void);
extern void WebauthnInit(void);

/* ---- authctx.c ---- */
extern void AuthctxCheckVersion(void);

/* Settings shared between modules. */
extern char *authctx_token_pepper;	/* token.c */
extern bool authctx_preloaded;		/* authctx.c */

#endif							/* AUTHCTX_H */
