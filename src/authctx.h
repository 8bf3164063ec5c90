/*-------------------------------------------------------------------------
 *
 * authctx.h
 *		Interfaces between authctx's modules.
 *
 * Each module of docs/architecture.md exports its entry points here, under
 * its own heading: crypto, fetch, token, context (context.c and
 * context_accessors.c), worker (worker.c, the task runner; seen.c, the
 * last-seen writer; cleanup.c, the cleanup worker), cache (cache.c and
 * cache_coherence.c; cache_internal.h is private to them), session,
 * identity, tenant, issuer, audit, request.  docs/architecture.md has what
 * each owns and which may call which; in short: request calls token,
 * session, tenant and context only; tenant calls identity, context and
 * audit; identity, token, context, cache, audit and crypto never call
 * request or tenant.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_H
#define AUTHCTX_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
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
#define CRYPTO_SHA1_LEN			20
#define CRYPTO_SEAL_KEY_LEN		32
#define CRYPTO_SEAL_OVERHEAD	(24 + 16)	/* secretbox nonce + MAC */
extern void CryptoHmacSha1(const unsigned char *key, size_t keylen,
						   const unsigned char *msg, size_t msglen,
						   unsigned char out[CRYPTO_SHA1_LEN]);
extern void CryptoSeal(const unsigned char key[CRYPTO_SEAL_KEY_LEN],
					   const unsigned char *msg, size_t len, unsigned char *out);
extern bool CryptoOpen(const unsigned char key[CRYPTO_SEAL_KEY_LEN],
					   const unsigned char *box, size_t len, unsigned char *out);

/* ---- fetch.c ---- */
#include "utils/snapshot.h"
extern bool FetchRow(const char *relname, const char *idxname, int nkeys,
					 const Datum *keys, const Oid *eqprocs, Snapshot snap,
					 int ncols, const char *const *cols, Datum *values, bool *nulls);
extern int	FetchRows(const char *relname, const char *idxname, int nkeys,
					  const Datum *keys, const Oid *eqprocs, Snapshot snap,
					  int limit, int ncols, const char *const *cols,
					  Datum *values, bool *nulls);
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
extern void TokenForget(AuthctxToken *tok);
extern void TokenKeyedHash(const void *in, size_t inlen, unsigned char *out);

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
	bool		has_session;	/* false for a JWT: session_id() is NULL */
	pg_uuid_t	session_id;
	char		auth_method[16];	/* session | api_key | jwt | admin */
	TimestampTz expires_at;
	char	   *scopes;			/* newline-separated, or NULL */
	char	   *amr;			/* newline-separated, or NULL */
	char	   *claims;			/* a JWT's verified claims (JSON), or NULL */
} AuthctxContext;

extern void ContextInit(void);
extern void ContextPublish(const pg_uuid_t *user_id, const pg_uuid_t *tenant_id,
						   const char *role, const pg_uuid_t *session_id,
						   const char *auth_method, TimestampTz expires_at,
						   const char *scopes, const char *amr,
						   const char *claims);
extern void ContextClear(void);
extern void ContextSetAdminBypass(const char *reason);
extern bool ContextAdminBypass(void);
extern const AuthctxContext *ContextCurrent(void);

/* authctx.missing_context: what tenant_id() does without a tenant */
typedef enum MissingContextMode
{
	MISSING_CONTEXT_DENY,		/* NULL: no row matches */
	MISSING_CONTEXT_ERROR		/* raise 28000 */
} MissingContextMode;
extern int	authctx_missing_context;
/* bumped by every change of the context: accessors' per-call-site caches */
extern uint64 authctx_ctx_generation;

/* ---- context_accessors.c (the context module's SQL-callable readers) ---- */
extern Datum ContextRowDatum(FunctionCallInfo fcinfo);

/* ---- worker.c: the task runner (the worker module is worker.c, seen.c, cleanup.c) ---- */
/* How a task went. */
typedef enum WorkerTaskStatus
{
	WORKER_TASK_DONE,			/* committed (without waiting: registered) */
	WORKER_TASK_NO_SLOT,		/* no background worker slot became free */
	WORKER_TASK_NO_SEGMENT,		/* no dynamic shared memory segment */
	WORKER_TASK_FAILED,			/* the worker failed or did not commit */
	WORKER_TASK_STANDBY			/* a standby: nothing can be written */
} WorkerTaskStatus;

extern void WorkerInit(void);
extern bool WorkerRunAutonomous(const char *kind, const char *payload_json,
								char **result);
/* for seen.c and cleanup.c */
extern WorkerTaskStatus WorkerTaskRun(Oid database, const char *kind,
									  const char *payload, bool wait, char **result);
extern void WorkerRegisterStatic(const char *function, const char *name);
extern void WorkerConnect(Oid database);

/* ---- seen.c: last-seen times, written off the request path ---- */
extern void SeenInit(void);
extern void WorkerNoteSeen(char kind, const pg_uuid_t *id, TimestampTz when);
extern TimestampTz WorkerSeenPending(char kind, const pg_uuid_t *id);

/*
 * The later of two last-seen times, where DT_NOEND means "never" (an API
 * key not used yet) and DT_NOBEGIN "nothing known".
 */
static inline TimestampTz
SeenLater(TimestampTz a, TimestampTz b)
{
	if (a == DT_NOEND || a == DT_NOBEGIN)
		return (b == DT_NOBEGIN) ? a : b;
	if (b == DT_NOEND || b == DT_NOBEGIN)
		return a;
	return Max(a, b);
}

/* ---- cleanup.c: the periodic cleanup worker ---- */
extern void CleanupInit(void);

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
	char		scopes[1024];	/* newline-separated, never cut: an API key's
								 * scopes; a session's amr (the login's
								 * authentication methods) */
	bool		scopes_bad;		/* the stored scopes do not validate or fit:
								 * the key is refused */
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
extern bool SessionIsLive(const SessionRecord *rec, TimestampTz now);

/* a session's last-seen time moves every idle timeout / this (src/session.c) */
#define AUTHCTX_SEEN_FRACTION	10
extern int64 SessionSeenInterval(char kind);
extern bool SessionValidate(const AuthctxToken *tok, SessionRecord *rec,
							TimestampTz *now);
extern void SessionNoteUse(const SessionRecord *rec, TimestampTz now);

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

/* ---- identity.c: memberships, for the request path ---- */
extern bool IdentityMemberRole(const pg_uuid_t *tenant_id, const pg_uuid_t *user_id,
							   Snapshot snap, char *role);
extern bool IdentityMemberRoleNow(const pg_uuid_t *tenant_id, const pg_uuid_t *user_id,
								  char *role);
extern bool IdentityTenantNamed(const char *name, pg_uuid_t *tenant_id);
extern bool IdentityMembership(const pg_uuid_t *user_id, const char *name,
							   pg_uuid_t *tenant_id, char *role);

/* ---- tenant.c ---- */
/* What TenantForRequest decided (auth_begin raises 42501 unless allowed). */
typedef enum TenantDecision
{
	TENANT_ALLOWED,				/* act in *tenant_id, or in no tenant */
	TENANT_NOT_MEMBER,			/* no such tenant, or the user is no member */
	TENANT_KEY_ELSEWHERE		/* an API key asked for a tenant not its own */
} TenantDecision;

extern TenantDecision TenantForRequest(const pg_uuid_t *user_id,
									   const SessionRecord *rec,
									   const char *requested,
									   pg_uuid_t *tenant_id,
									   bool *has_tenant, char *role);

/* ---- issuer.c ---- */
/*
 * What a verified JWT says, for auth_begin.  Strings are palloc'd in the
 * caller's memory context; every one is valid in the database encoding.
 */
typedef struct IssuerResult
{
	int			reason;			/* 0: verified; else why not (a JwtStatus of
								 * jws.h, for IssuerReasonName only: never
								 * shown to the caller of auth_begin) */
	int			json_reason;	/* for a refused header or claims object: an
								 * SjsonStatus of sjson.h */
	char	   *issuer;			/* the registered issuer, equal to "iss" */
	char	   *subject;		/* "sub": with issuer, the identity link */
	TimestampTz expires_at;		/* "exp" */
	bool		has_issued_at;
	TimestampTz issued_at;		/* "iat", when present */
	char	   *tenant;			/* the issuer's tenant claim (a slug or uuid
								 * as text), or NULL when none applies */
	List	   *scopes;			/* char *: "scope" words and "scp" entries */
	List	   *amr;			/* char *: the "amr" entries */
	char	   *kid;			/* the key that verified it (NULL: no kid) */
	const char *alg;			/* EdDSA, ES256 or RS256 */
	Datum		claims;			/* jsonb: the whole verified payload */
	char	   *claims_text;	/* the same payload as JSON text, as signed
								 * (jsonb_in has read it: claims() will too) */
} IssuerResult;

extern bool IssuerLooksLikeJwt(const char *str, size_t len);
extern uint64 IssuerGeneration(void);
extern bool IssuerVerify(const char *token, size_t len, TimestampTz now,
						 IssuerResult *out);
extern const char *IssuerReasonName(const IssuerResult *res);

/* ---- jwt.c: auth_begin for JWTs ---- */
#define TOKEN_JWT	'j'			/* SessionRecord.kind of a JWT (not a wire
								 * kind: JWTs are not authctx tokens) */
extern bool JwtAuthBegin(FunctionCallInfo fcinfo, Datum *result);

/* ---- request.c: what jwt.c shares with the session path ---- */
extern void RequestReject(void) pg_attribute_noreturn();
extern void RequestWarnIfBypassesRls(void);
extern void RequestRefuseTenant(void) pg_attribute_noreturn();

/* ---- the other modules' init functions (authctx.c calls them) ---- */
extern void RedactInit(void);
extern void RedactNoteSecret(void);
extern void TenantInit(void);
extern void SessionInit(void);
extern void IdentityInit(void);
extern void WebauthnInit(void);

/* ---- otp.c: one-time tokens and TOTP (the onetime module) ---- */
extern void OtpInit(void);

/* ---- audit.c ---- */
extern bool AuditWriteDurable(const char *event, const pg_uuid_t *user_id,
							  const pg_uuid_t *tenant_id,
							  const pg_uuid_t *session_id,
							  const char *detail_json);

/* ---- authctx.c ---- */
extern void AuthctxCheckVersion(void);

/* Settings shared between modules. */
extern char *authctx_token_pepper;	/* token.c */

#endif							/* AUTHCTX_H */
