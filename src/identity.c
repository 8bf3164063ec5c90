/*-------------------------------------------------------------------------
 *
 * identity.c
 *		Password hashing for the identity module: argon2id via libsodium.
 *
 * Tenants, users, memberships and OAuth links are plain rows managed by the
 * SECURITY DEFINER functions of src/sql/40_identity.sql.  What needs C is the
 * password: this file exposes libsodium's crypto_pwhash_str family (argon2id)
 * to those functions as internal SQL functions, with the cost parameters
 * taken from superuser-only settings:
 *
 *		authctx._password_hash(password)            policy-checked new hash
 *		authctx._password_rehash(password)          new hash, no minimum
 *		authctx._password_verify(hash, password)    constant-time verify
 *		authctx._password_needs_rehash(hash)        parameters out of date?
 *		authctx._password_dummy_verify(password)    same cost, always false
 *
 * The dummy verification runs against a random argon2id string made once
 * per process (again when the parameters change) with the current
 * parameters, so that verify_password takes about as long for an unknown
 * email as for a known one.
 *
 * Argon2 allocates its whole memory limit at once and cannot be
 * interrupted; the length bound (authctx.password_max_length) keeps huge
 * inputs out, and the memory limit times the number of concurrent logins
 * is what a server must be sized for.
 *
 * Passwords never appear in a message; copies this file makes are wiped with
 * sodium_memzero before they are freed.
 *
 * Emails.  One normalisation decides which emails are the same account, on
 * write (the unique index on authctx._email_key(email)) and on lookup
 * (login, verify_password) alike:
 *
 *		authctx._email_key(email) = UTF-8 bytes of NFC(casefold(NFC(email)))
 *
 * Unicode NFC, then ICU's default full case folding (u_strFoldCase with
 * U_FOLD_CASE_DEFAULT: locale-free, so neither the database's collation nor
 * its ctype plays any part), then NFC again (folding can undo composition).
 * The key is bytea, compared byte by byte: no collation applies to it
 * either.  In a database whose encoding is not UTF-8 the text is converted
 * to UTF-8 first (in SQL_ASCII it must be valid UTF-8: 22021 otherwise).
 * Input longer than EMAIL_KEY_MAX_BYTES gets NULL: no storable email is
 * that long (_check_email allows 254 characters), so such a lookup finds
 * nobody.  The key depends on the Unicode tables of the ICU library the
 * server runs with; after an ICU major upgrade, REINDEX INDEX
 * authctx.users_email_key (as for ICU collations).
 *
 * Memberships, for the request path.  Whether a user is a member of a
 * tenant, and with which role, is identity's answer: IdentityMemberRole()
 * reads one membership by primary key (fetch.c, no SPI), and
 * IdentityMembership() resolves a tenant named by a request (slug or uuid
 * text) through the membership cache, then the tables.  session.c and
 * tenant.c ask these; neither reads memberships itself.
 *
 * The per-account lock of login is a transaction advisory lock on
 * authctx._keyed_hash64('authctx account' || email key, per-database
 * secret): keyed, so that pg_locks, which every role can read, does not
 * tell which email is being tried.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "authctx.h"

/* Settings: OWASP's minimum argon2id configuration by default. */
int			authctx_password_opslimit = 2;
int			authctx_password_memlimit = 19 * 1024;	/* kB: 19 MiB */
int			authctx_password_min_length = 8;
int			authctx_password_max_length = 1024;

/* Upper bounds of the settings: a login must stay a login, not a DoS. */
#define PASSWORD_OPSLIMIT_MAX		100
#define PASSWORD_MEMLIMIT_MAX_KB	(4 * 1024 * 1024)	/* 4 GiB */
#define PASSWORD_LENGTH_MAX			4096

/* Version 1.3 of Argon2, the only one libsodium writes. */
#define ARGON2_VERSION_NUMBER		19

/* The per-process dummy hash and the parameters it was made with. */
static char authctx_dummy_hash[crypto_pwhash_STRBYTES];
static int	authctx_dummy_opslimit = 0;
static int	authctx_dummy_memlimit = 0;

PG_FUNCTION_INFO_V1(authctx_password_hash);
PG_FUNCTION_INFO_V1(authctx_password_rehash);
PG_FUNCTION_INFO_V1(authctx_password_verify);
PG_FUNCTION_INFO_V1(authctx_password_needs_rehash);
PG_FUNCTION_INFO_V1(authctx_password_dummy_verify);
PG_FUNCTION_INFO_V1(authctx_email_key);
PG_FUNCTION_INFO_V1(authctx_keyed_hash64);

/* Longest email (in bytes of the server encoding) that gets a key. */
#define EMAIL_KEY_MAX_BYTES			1024

/* Define the password settings; all superuser-only, they set the cost. */
void
IdentityInit(void)
{
	DefineCustomIntVariable("authctx.password_opslimit",
							"Argon2id passes (time cost) for new password hashes.",
							"Existing hashes are rehashed at the next successful verification.",
							&authctx_password_opslimit,
							2, crypto_pwhash_OPSLIMIT_MIN, PASSWORD_OPSLIMIT_MAX,
							PGC_SUSET, GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.password_memlimit",
							"Argon2id memory cost for new password hashes.",
							"Each hash or verification allocates this much at once.",
							&authctx_password_memlimit,
							19 * 1024, crypto_pwhash_MEMLIMIT_MIN / 1024,
							PASSWORD_MEMLIMIT_MAX_KB,
							PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.password_min_length",
							"Shortest password set_password accepts, in characters.",
							"Existing passwords keep working when this is raised.",
							&authctx_password_min_length,
							8, 1, PASSWORD_LENGTH_MAX,
							PGC_SUSET, GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.password_max_length",
							"Longest password accepted, in bytes.",
							"A hard cap: longer passwords are refused by set_password and never verified.",
							&authctx_password_max_length,
							1024, 1, PASSWORD_LENGTH_MAX,
							PGC_SUSET, GUC_SUPERUSER_ONLY,
							NULL, NULL, NULL);
}

/* Memory limit in bytes, as libsodium wants it. */
static inline size_t
PasswordMemlimitBytes(void)
{
	return (size_t) authctx_password_memlimit * 1024;
}

/* Wipe a detoasted copy of an argument; the caller's datum is not ours. */
static inline void
PasswordWipeArg(text *t, Datum orig)
{
	if ((Pointer) t != DatumGetPointer(orig))
	{
		sodium_memzero(t, VARSIZE_ANY(t));
		pfree(t);
	}
}

/*
 * Refuse passwords set_password must not store: empty, shorter than the
 * minimum (when enforced), longer than the hard cap.  Messages name the
 * limit, never the password.
 */
static void
PasswordCheckPolicy(const char *pw, size_t len, bool enforce_min)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password must not be empty")));
	if (len > (size_t) authctx_password_max_length)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password is too long"),
				 errdetail("A password may have at most %d bytes.",
						   authctx_password_max_length)));
	if (enforce_min &&
		pg_mbstrlen_with_len(pw, (int) len) < authctx_password_min_length)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("password is too short"),
				 errdetail("A password needs at least %d characters.",
						   authctx_password_min_length)));
}

/* Hash a password into out with the current parameters, or fail loudly. */
static void
PasswordHashInto(char *out, const char *pw, size_t len)
{
	CryptoInit();
	CHECK_FOR_INTERRUPTS();
	if (crypto_pwhash_str_alg(out, pw, (unsigned long long) len,
							  (unsigned long long) authctx_password_opslimit,
							  PasswordMemlimitBytes(),
							  crypto_pwhash_ALG_ARGON2ID13) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute password hash"),
				 errdetail("Argon2id could not allocate %d kB.",
						   authctx_password_memlimit)));
}

/*
 * Verify pw against a stored hash string; false for anything malformed.
 * The hash is copied into a NUL-terminated buffer, as libsodium requires.
 */
static bool
PasswordVerify(const char *hash, size_t hashlen, const char *pw, size_t len)
{
	char		buf[crypto_pwhash_STRBYTES];
	bool		ok;

	if (len == 0 || len > (size_t) authctx_password_max_length)
		return false;
	if (hashlen == 0 || hashlen >= sizeof(buf))
		return false;
	memcpy(buf, hash, hashlen);
	buf[hashlen] = '\0';
	CryptoInit();
	CHECK_FOR_INTERRUPTS();
	ok = crypto_pwhash_str_verify(buf, pw, (unsigned long long) len) == 0;
	sodium_memzero(buf, sizeof(buf));
	return ok;
}

/* Shared body of _password_hash and _password_rehash. */
static Datum
PasswordHashDatum(FunctionCallInfo fcinfo, bool enforce_min)
{
	text	   *pw;
	char		out[crypto_pwhash_STRBYTES];
	text	   *result;

	RedactNoteSecret();
	pw = PG_GETARG_TEXT_PP(0);
	PasswordCheckPolicy(VARDATA_ANY(pw), VARSIZE_ANY_EXHDR(pw), enforce_min);
	PasswordHashInto(out, VARDATA_ANY(pw), VARSIZE_ANY_EXHDR(pw));
	PasswordWipeArg(pw, PG_GETARG_DATUM(0));
	result = cstring_to_text(out);
	sodium_memzero(out, sizeof(out));
	PG_RETURN_TEXT_P(result);
}

/*
 * authctx._password_hash(password text) -> text
 *
 * The argon2id string set_password stores; applies the length policy so
 * that no other caller can store a password the settings forbid.
 */
Datum
authctx_password_hash(PG_FUNCTION_ARGS)
{
	return PasswordHashDatum(fcinfo, true);
}

/*
 * authctx._password_rehash(password text) -> text
 *
 * Rehash at login: the password already verified, so a minimum raised since
 * it was set must not lock its owner out.
 */
Datum
authctx_password_rehash(PG_FUNCTION_ARGS)
{
	return PasswordHashDatum(fcinfo, false);
}

/*
 * authctx._password_verify(hash text, password text) -> boolean
 *
 * Constant-time check of a password against its stored hash (libsodium
 * compares in constant time); over-long passwords are refused unhashed.
 */
Datum
authctx_password_verify(PG_FUNCTION_ARGS)
{
	text	   *hash;
	text	   *pw;
	bool		ok;

	RedactNoteSecret();
	hash = PG_GETARG_TEXT_PP(0);
	pw = PG_GETARG_TEXT_PP(1);
	ok = PasswordVerify(VARDATA_ANY(hash), VARSIZE_ANY_EXHDR(hash),
						VARDATA_ANY(pw), VARSIZE_ANY_EXHDR(pw));
	PasswordWipeArg(pw, PG_GETARG_DATUM(1));
	PG_RETURN_BOOL(ok);
}

/*
 * authctx._password_needs_rehash(hash text) -> boolean
 *
 * True when the hash was made with other parameters than the current
 * settings, or is not an argon2id string at all.
 */
Datum
authctx_password_needs_rehash(PG_FUNCTION_ARGS)
{
	text	   *hash;
	char		buf[crypto_pwhash_STRBYTES];
	size_t		len;
	int			rc;

	RedactNoteSecret();
	hash = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(hash);
	if (len == 0 || len >= sizeof(buf))
		PG_RETURN_BOOL(true);
	memcpy(buf, VARDATA_ANY(hash), len);
	buf[len] = '\0';
	CryptoInit();
	rc = crypto_pwhash_argon2id_str_needs_rehash(buf,
												 (unsigned long long) authctx_password_opslimit,
												 PasswordMemlimitBytes());
	sodium_memzero(buf, sizeof(buf));
	PG_RETURN_BOOL(rc != 0);
}

/*
 * Make the per-process dummy hash for the current parameters: a well-formed
 * argon2id string with a random salt and a random digest.  Verifying against
 * it costs exactly what verifying a real hash with these parameters costs,
 * and nothing can match it; building it costs no hashing, so the first
 * unknown email of a backend is not slower than the next ones.
 */
static void
PasswordDummyRefresh(void)
{
	unsigned char salt[crypto_pwhash_SALTBYTES];
	unsigned char digest[32];
	char		salt64[sodium_base64_ENCODED_LEN(crypto_pwhash_SALTBYTES,
											sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
	char		digest64[sodium_base64_ENCODED_LEN(32,
											  sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];

	if (authctx_dummy_opslimit == authctx_password_opslimit &&
		authctx_dummy_memlimit == authctx_password_memlimit)
		return;

	CryptoRandomBytes(salt, sizeof(salt));
	CryptoRandomBytes(digest, sizeof(digest));
	sodium_bin2base64(salt64, sizeof(salt64), salt, sizeof(salt),
					  sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	sodium_bin2base64(digest64, sizeof(digest64), digest, sizeof(digest),
					  sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	snprintf(authctx_dummy_hash, sizeof(authctx_dummy_hash),
			 "%sv=%d$m=%d,t=%d,p=1$%s$%s",
			 crypto_pwhash_argon2id_STRPREFIX, ARGON2_VERSION_NUMBER,
			 authctx_password_memlimit, authctx_password_opslimit,
			 salt64, digest64);

	/* a string libsodium would not parse would fail fast: make sure */
	if (crypto_pwhash_argon2id_str_needs_rehash(authctx_dummy_hash,
												(unsigned long long) authctx_password_opslimit,
												PasswordMemlimitBytes()) != 0)
		elog(ERROR, "dummy password hash is not a valid argon2id string");

	authctx_dummy_opslimit = authctx_password_opslimit;
	authctx_dummy_memlimit = authctx_password_memlimit;
}

/*
 * authctx._password_dummy_verify(password text) -> boolean
 *
 * Burn the time of one real verification for an unknown email (or a user
 * without a password), against the per-process dummy hash made with the
 * current parameters; always false.
 */
Datum
authctx_password_dummy_verify(PG_FUNCTION_ARGS)
{
	text	   *pw;

	RedactNoteSecret();
	pw = PG_GETARG_TEXT_PP(0);
	PasswordDummyRefresh();
	(void) PasswordVerify(authctx_dummy_hash, strlen(authctx_dummy_hash),
						  VARDATA_ANY(pw), VARSIZE_ANY_EXHDR(pw));
	PasswordWipeArg(pw, PG_GETARG_DATUM(0));
	PG_RETURN_BOOL(false);
}

/* ---------------------------------------------------------------------
 * Emails and the per-account lock key.
 * ---------------------------------------------------------------------
 */

/* Turn an ICU failure into an error (can only be out of memory here). */
static void
EmailIcuCheck(UErrorCode status, bool preflight)
{
	if (preflight && status == U_BUFFER_OVERFLOW_ERROR)
		return;
	if (U_FAILURE(status))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not normalize an email address: %s", u_errorName(status))));
}

/* NFC of a UTF-16 string, in a palloc'd buffer sized by preflighting. */
static UChar *
EmailNfc(const UChar *src, int32_t len, int32_t *outlen)
{
	UErrorCode	status = U_ZERO_ERROR;
	const UNormalizer2 *nfc = unorm2_getNFCInstance(&status);
	int32_t		need;
	UChar	   *dst;

	EmailIcuCheck(status, false);
	need = unorm2_normalize(nfc, src, len, NULL, 0, &status);
	EmailIcuCheck(status, true);
	status = U_ZERO_ERROR;
	dst = palloc((need + 1) * sizeof(UChar));
	*outlen = unorm2_normalize(nfc, src, len, dst, need + 1, &status);
	EmailIcuCheck(status, false);
	return dst;
}

/* Default (locale-free) full case folding, in a palloc'd buffer. */
static UChar *
EmailFold(const UChar *src, int32_t len, int32_t *outlen)
{
	UErrorCode	status = U_ZERO_ERROR;
	int32_t		need;
	UChar	   *dst;

	need = u_strFoldCase(NULL, 0, src, len, U_FOLD_CASE_DEFAULT, &status);
	EmailIcuCheck(status, true);
	status = U_ZERO_ERROR;
	dst = palloc((need + 1) * sizeof(UChar));
	*outlen = u_strFoldCase(dst, need + 1, src, len, U_FOLD_CASE_DEFAULT, &status);
	EmailIcuCheck(status, false);
	return dst;
}

/*
 * authctx._email_key(email text) -> bytea
 *
 * The identity of an email for uniqueness and lookup: UTF-8 bytes of
 * NFC(casefold(NFC(email))); NULL for input no storable email can equal.
 */
Datum
authctx_email_key(PG_FUNCTION_ARGS)
{
	text	   *email = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(email);
	char	   *utf8;
	UChar	   *u16;
	UChar	   *nfc;
	UChar	   *folded;
	UChar	   *key;
	int32_t		n16;
	int32_t		n;
	int32_t		nout;
	UErrorCode	status = U_ZERO_ERROR;
	bytea	   *result;

	if (len > EMAIL_KEY_MAX_BYTES)
		PG_RETURN_NULL();
	/* to UTF-8 (validated, in SQL_ASCII too); a no-op in UTF-8 databases */
	utf8 = pg_server_to_any(VARDATA_ANY(email), len, PG_UTF8);
	if (utf8 != VARDATA_ANY(email))
		len = strlen(utf8);

	/* UTF-8 never needs more UTF-16 units than it has bytes */
	u16 = palloc((len + 1) * sizeof(UChar));
	u_strFromUTF8(u16, len + 1, &n16, utf8, len, &status);
	if (U_FAILURE(status))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("email address is not valid UTF-8")));

	nfc = EmailNfc(u16, n16, &n);
	folded = EmailFold(nfc, n, &n);
	key = EmailNfc(folded, n, &n);

	u_strToUTF8(NULL, 0, &nout, key, n, &status);
	EmailIcuCheck(status, true);
	status = U_ZERO_ERROR;
	result = palloc(VARHDRSZ + nout + 1);
	u_strToUTF8(VARDATA(result), nout + 1, &nout, key, n, &status);
	EmailIcuCheck(status, false);
	SET_VARSIZE(result, VARHDRSZ + nout);

	pfree(u16);
	pfree(nfc);
	pfree(folded);
	pfree(key);
	PG_RETURN_BYTEA_P(result);
}

/*
 * authctx._keyed_hash64(data bytea, key bytea) -> bigint
 *
 * The first 64 bits of keyed BLAKE2b: a lock key that nobody without the
 * key can compute or recognise (pg_locks shows advisory keys to everyone).
 */
Datum
authctx_keyed_hash64(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	bytea	   *key = PG_GETARG_BYTEA_PP(1);
	unsigned char digest[16];
	int64		result;

	if (VARSIZE_ANY_EXHDR(key) < crypto_generichash_KEYBYTES_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hash key must have at least %d bytes",
						(int) crypto_generichash_KEYBYTES_MIN)));
	CryptoHash(digest, sizeof(digest),
			   VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
			   (const unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	memcpy(&result, digest, sizeof(result));
	PG_RETURN_INT64(result);
}

/* ---------------------------------------------------------------------
 * Memberships, for the request path
 * ---------------------------------------------------------------------
 */

/* Is str the canonical text form of a uuid (8-4-4-4-12 hex digits)? */
static bool
IdentityLooksLikeUuid(const char *str)
{
	if (strlen(str) != AUTHCTX_UUID_TEXT_LEN)
		return false;
	for (int i = 0; i < AUTHCTX_UUID_TEXT_LEN; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (str[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) str[i]))
			return false;
	}
	return true;
}

/*
 * The id of the tenant named by slug or uuid text, read from the tenants
 * table with snapshot snap; false when there is no such tenant.
 */
static bool
IdentityTenantLookup(const char *name, bool by_uuid, const pg_uuid_t *named,
					 Snapshot snap, pg_uuid_t *tenant_id)
{
	Datum		key;
	Oid			eq;
	Datum		v[1];
	bool		n[1];
	static const char *const id_col[] = {"id"};

	if (by_uuid)
	{
		key = UUIDPGetDatum(named);
		eq = F_UUID_EQ;
		if (!FetchRow("tenants", "tenants_pkey", 1, &key, &eq, snap, 1, id_col, v, n))
			return false;
	}
	else
	{
		key = CStringGetTextDatum(name);
		eq = F_TEXTEQ;
		if (!FetchRow("tenants", "tenants_slug_key", 1, &key, &eq, snap, 1, id_col, v, n))
			return false;
	}
	*tenant_id = *DatumGetUUIDP(v[0]);
	return true;
}

/* The user's role in a tenant, read with snapshot snap; false when not a member. */
bool
IdentityMemberRole(const pg_uuid_t *tenant_id, const pg_uuid_t *user_id,
				   Snapshot snap, char *role)
{
	static const char *const member_cols[] = {"role"};
	Datum		keys[2] = {UUIDPGetDatum((pg_uuid_t *) tenant_id),
	UUIDPGetDatum((pg_uuid_t *) user_id)};
	Oid			eq[2] = {F_UUID_EQ, F_UUID_EQ};
	Datum		v[1];
	bool		n[1];

	if (!FetchRow("memberships", "memberships_pkey", 2, keys, eq, snap,
				  1, member_cols, v, n) || n[0])
		return false;
	text_to_cstring_buffer(DatumGetTextPP(v[0]), role, NAMEDATALEN);
	return true;
}

/*
 * IdentityMemberRole under the latest snapshot: a removal that committed
 * before this call is seen even inside an older REPEATABLE READ snapshot.
 */
bool
IdentityMemberRoleNow(const pg_uuid_t *tenant_id, const pg_uuid_t *user_id,
					  char *role)
{
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	bool		ok = IdentityMemberRole(tenant_id, user_id, snap, role);

	UnregisterSnapshot(snap);
	return ok;
}

/*
 * The id a tenant name stands for: uuid text as it is (no table read), a
 * slug as the tenants table says under the latest snapshot (never the
 * cache).  false when no tenant has that slug.
 */
bool
IdentityTenantNamed(const char *name, pg_uuid_t *tenant_id)
{
	Snapshot	snap;
	bool		found;

	if (IdentityLooksLikeUuid(name))
	{
		*tenant_id = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(name)));
		return true;
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	found = IdentityTenantLookup(name, false, NULL, snap, tenant_id);
	UnregisterSnapshot(snap);
	return found;
}

/*
 * Is the user a member of the tenant named (slug or uuid text), and with
 * which role?  The membership cache answers first; a miss reads the tenant
 * and the membership by primary key under the latest snapshot, with the
 * cache stamp read before it, and offers a positive answer to the cache.
 * false for no such tenant and for no member alike.
 */
bool
IdentityMembership(const pg_uuid_t *user_id, const char *name,
				   pg_uuid_t *tenant_id, char *role)
{
	pg_uuid_t	named;
	bool		by_uuid = IdentityLooksLikeUuid(name);
	uint64		stamp;
	Snapshot	snap;
	bool		ok;

	if (by_uuid)
		named = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(name)));
	if (CacheMemberGet(user_id, by_uuid ? &named : NULL, name, tenant_id, role))
		return true;

	stamp = CacheStamp();		/* before GetLatestSnapshot() */
	snap = RegisterSnapshot(GetLatestSnapshot());
	ok = IdentityTenantLookup(name, by_uuid, &named, snap, tenant_id) &&
		IdentityMemberRole(tenant_id, user_id, snap, role);
	UnregisterSnapshot(snap);
	if (ok)
		CacheMemberPut(user_id, by_uuid ? &named : NULL, name, tenant_id, role, stamp);
	return ok;
}
