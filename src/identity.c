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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

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
	text	   *pw = PG_GETARG_TEXT_PP(0);
	char		out[crypto_pwhash_STRBYTES];
	text	   *result;

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
	text	   *hash = PG_GETARG_TEXT_PP(0);
	text	   *pw = PG_GETARG_TEXT_PP(1);
	bool		ok;

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
	text	   *hash = PG_GETARG_TEXT_PP(0);
	char		buf[crypto_pwhash_STRBYTES];
	size_t		len = VARSIZE_ANY_EXHDR(hash);
	int			rc;

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
	text	   *pw = PG_GETARG_TEXT_PP(0);

	PasswordDummyRefresh();
	(void) PasswordVerify(authctx_dummy_hash, strlen(authctx_dummy_hash),
						  VARDATA_ANY(pw), VARSIZE_ANY_EXHDR(pw));
	PasswordWipeArg(pw, PG_GETARG_DATUM(0));
	PG_RETURN_BOOL(false);
}
