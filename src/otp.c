/*-------------------------------------------------------------------------
 *
 * otp.c
 *		The C half of the onetime module: TOTP second factors (RFC 6238)
 *		and the verifiers of their recovery codes.
 *
 * The flows themselves (one-time tokens of kind axo_, email verification,
 * password reset, magic links, invitations, TOTP enrolment and step-up) are
 * SQL in src/sql/68_flows.sql; this file holds what SQL cannot do well or
 * must not see:
 *
 *	- TOTP secrets.  enroll_totp draws a 160-bit secret from libsodium's
 *	  CSPRNG, seals it with crypto_secretbox (CryptoSeal) and hands SQL only
 *	  the sealed box and the otpauth:// URI that the user's authenticator
 *	  app scans.  Checking a code opens the box here, computes the codes of
 *	  the steps around the wall clock (HOTP over HMAC-SHA1 from libcrypto,
 *	  RFC 4226 section 5.3's dynamic truncation) and compares them in
 *	  constant time; the secret never reaches SQL again, and every buffer
 *	  that held it is wiped.
 *	- The key.  authctx.secret_key (superuser-only, 64 hex characters) is
 *	  the master key; each user's box is sealed under BLAKE2b(master,
 *	  "authctx totp v1" || user id), so a box copied onto another user's row
 *	  does not open.  Without a usable key every TOTP function fails closed
 *	  with 55000, and the key's text never appears in a message.
 *	- Recovery codes.  Twenty characters of Crockford's base32 (100 bits)
 *	  from the CSPRNG, shown once; only a verifier, the pepper-keyed BLAKE2b
 *	  of the token module (TokenKeyedHash) over user id and normalised code,
 *	  is stored.  100 bits leave nothing to brute-force, so a fast hash is
 *	  the right tool, as for tokens.
 *
 * Error messages never contain a code, a secret or the key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authctx.h"

#define TOTP_SECRET_LEN		20	/* 160 bits, RFC 4226's recommendation */
#define TOTP_PERIOD			30	/* seconds per step */
#define TOTP_DIGITS			6
#define TOTP_SEALED_LEN		(CRYPTO_SEAL_OVERHEAD + TOTP_SECRET_LEN)
#define RECOVERY_CODE_LEN	20	/* characters of Crockford base32: 100 bits */
#define RECOVERY_GROUP		5	/* shown as xxxxx-xxxxx-xxxxx-xxxxx */

/* authctx.secret_key: the master key of TOTP secrets at rest (hex). */
static char *authctx_secret_key = NULL;

/* authctx.totp_issuer: the issuer an authenticator app shows. */
static char *authctx_totp_issuer = NULL;

static const char crockford32[] = "0123456789abcdefghjkmnpqrstvwxyz";

PG_FUNCTION_INFO_V1(authctx_totp_enroll);
PG_FUNCTION_INFO_V1(authctx_totp_match);
PG_FUNCTION_INFO_V1(authctx_totp_code);
PG_FUNCTION_INFO_V1(authctx_recovery_codes);
PG_FUNCTION_INFO_V1(authctx_recovery_verifier);

/* Define the onetime module's settings. */
void
OtpInit(void)
{
	DefineCustomStringVariable("authctx.secret_key",
							   "Key that encrypts TOTP secrets at rest: 64 hexadecimal characters (32 bytes).",
							   "Set it in postgresql.conf, never in a table; changing it makes every enrolled TOTP factor unusable.",
							   &authctx_secret_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("authctx.totp_issuer",
							   "Issuer name written into otpauth:// URIs (what authenticator apps display).",
							   NULL,
							   &authctx_totp_issuer,
							   "authctx",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

/*
 * The user's sealing key, derived from authctx.secret_key; 55000 (naming
 * the setting, never its value) when the key is missing or malformed.
 */
static void
OtpUserKey(const pg_uuid_t *user, unsigned char key[CRYPTO_SEAL_KEY_LEN])
{
	unsigned char master[32];
	unsigned char info[15 + UUID_LEN];
	const char *hex = authctx_secret_key;
	bool		ok = hex != NULL && strlen(hex) == 64;

	for (int i = 0; ok && i < 32; i++)
	{
		int			hi = HexDigitValue((unsigned char) hex[2 * i]);
		int			lo = HexDigitValue((unsigned char) hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			ok = false;
		else
			master[i] = (unsigned char) (hi << 4 | lo);
	}
	if (!ok)
	{
		CryptoZero(master, sizeof(master));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("authctx.secret_key is not set to a 32-byte key"),
				 errhint("A superuser sets authctx.secret_key in postgresql.conf to 64 hexadecimal characters, for example the output of \"openssl rand -hex 32\".")));
	}
	memcpy(info, "authctx totp v1", 15);
	memcpy(info + 15, user->data, UUID_LEN);
	CryptoHash(key, CRYPTO_SEAL_KEY_LEN, info, sizeof(info), master, sizeof(master));
	CryptoZero(master, sizeof(master));
}

/*
 * HOTP (RFC 4226): the code of one counter value, as a number below
 * 10^digits.  The HMAC is libcrypto's; only the truncation is written here.
 */
static uint32
OtpHotp(const unsigned char *key, size_t keylen, uint64 counter, int digits)
{
	unsigned char msg[8];
	unsigned char mac[CRYPTO_SHA1_LEN];
	uint32		bin;
	uint32		mod = 1;
	int			off;

	for (int i = 7; i >= 0; i--)
	{
		msg[i] = (unsigned char) (counter & 0xff);
		counter >>= 8;
	}
	CryptoHmacSha1(key, keylen, msg, sizeof(msg), mac);
	off = mac[CRYPTO_SHA1_LEN - 1] & 0x0f;
	bin = ((uint32) (mac[off] & 0x7f) << 24) | ((uint32) mac[off + 1] << 16) |
		((uint32) mac[off + 2] << 8) | (uint32) mac[off + 3];
	CryptoZero(mac, sizeof(mac));
	for (int i = 0; i < digits; i++)
		mod *= 10;
	return bin % mod;
}

/* Seconds since the Unix epoch of a timestamp, rounded down. */
static int64
OtpUnixSeconds(TimestampTz t)
{
	int64		us = t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	return us >= 0 ? us / USECS_PER_SEC : -((-us + USECS_PER_SEC - 1) / USECS_PER_SEC);
}

/* Append text percent-encoded as an otpauth:// label or parameter needs. */
static void
OtpAppendEncoded(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~' ||
			c == '@')
			appendStringInfoChar(buf, (char) c);
		else
			appendStringInfo(buf, "%%%02X", c);
	}
}

/* Append RFC 4648 base32 (no padding) of a secret whose length is a multiple of 5. */
static void
OtpAppendBase32(StringInfo buf, const unsigned char *in, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

	for (size_t i = 0; i + 5 <= len; i += 5)
	{
		uint64		v = 0;

		for (int j = 0; j < 5; j++)
			v = (v << 8) | in[i + j];
		for (int j = 7; j >= 0; j--)
			appendStringInfoChar(buf, alphabet[(v >> (5 * j)) & 0x1f]);
	}
}

/*
 * _totp_enroll(user_id uuid, account text, OUT sealed bytea, OUT uri text):
 * a fresh secret, sealed for this user, and the otpauth:// URI that carries
 * it to the authenticator app (the only place it is ever shown).
 */
Datum
authctx_totp_enroll(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user = PG_GETARG_UUID_P(0);
	char	   *account = text_to_cstring(PG_GETARG_TEXT_PP(1));
	unsigned char key[CRYPTO_SEAL_KEY_LEN];
	unsigned char secret[TOTP_SECRET_LEN];
	bytea	   *sealed = palloc(VARHDRSZ + TOTP_SEALED_LEN);
	const char *issuer = authctx_totp_issuer && authctx_totp_issuer[0] ? authctx_totp_issuer : "authctx";
	StringInfoData uri;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_totp_enroll must return a record");
	tupdesc = BlessTupleDesc(tupdesc);

	OtpUserKey(user, key);
	CryptoRandomBytes(secret, sizeof(secret));
	SET_VARSIZE(sealed, VARHDRSZ + TOTP_SEALED_LEN);
	CryptoSeal(key, secret, sizeof(secret), (unsigned char *) VARDATA(sealed));
	CryptoZero(key, sizeof(key));

	initStringInfo(&uri);
	appendStringInfoString(&uri, "otpauth://totp/");
	OtpAppendEncoded(&uri, issuer);
	appendStringInfoChar(&uri, ':');
	OtpAppendEncoded(&uri, account);
	appendStringInfoString(&uri, "?secret=");
	OtpAppendBase32(&uri, secret, sizeof(secret));
	CryptoZero(secret, sizeof(secret));
	appendStringInfoString(&uri, "&issuer=");
	OtpAppendEncoded(&uri, issuer);
	appendStringInfo(&uri, "&algorithm=SHA1&digits=%d&period=%d", TOTP_DIGITS, TOTP_PERIOD);

	values[0] = PointerGetDatum(sealed);
	values[1] = PointerGetDatum(cstring_to_text(uri.data));
	CryptoZero(uri.data, uri.len);
	pfree(uri.data);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * _totp_match(user_id uuid, sealed bytea, code text, after_step bigint,
 * at timestamptz) -> bigint: the time step (at's, or one either side) whose
 * code equals code and that is newer than after_step, or NULL.  All three
 * candidate codes are computed and compared in constant time whatever the
 * outcome; a box that does not open is an error (55000), never a mismatch.
 */
Datum
authctx_totp_match(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user = PG_GETARG_UUID_P(0);
	bytea	   *sealed = PG_GETARG_BYTEA_PP(1);
	text	   *code = PG_GETARG_TEXT_PP(2);
	int64		after = PG_GETARG_INT64(3);
	int64		now_step = OtpUnixSeconds(PG_GETARG_TIMESTAMPTZ(4)) / TOTP_PERIOD;
	unsigned char key[CRYPTO_SEAL_KEY_LEN];
	unsigned char secret[TOTP_SECRET_LEN];
	char		given[TOTP_DIGITS];
	bool		well_formed = VARSIZE_ANY_EXHDR(code) == TOTP_DIGITS;
	int64		matched = -1;
	bool		opened;

	memset(given, '0', sizeof(given));
	if (well_formed)
	{
		memcpy(given, VARDATA_ANY(code), TOTP_DIGITS);
		for (int i = 0; i < TOTP_DIGITS; i++)
			if (given[i] < '0' || given[i] > '9')
				well_formed = false;
	}

	OtpUserKey(user, key);
	opened = VARSIZE_ANY_EXHDR(sealed) == TOTP_SEALED_LEN &&
		CryptoOpen(key, (const unsigned char *) VARDATA_ANY(sealed),
				   TOTP_SEALED_LEN, secret);
	CryptoZero(key, sizeof(key));
	if (!opened)
	{
		CryptoZero(given, sizeof(given));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the TOTP secret cannot be decrypted with authctx.secret_key"),
				 errhint("authctx.secret_key was changed since the factor was enrolled: restore the old key, or disable and enrol the factor again.")));
	}

	for (int64 step = now_step - 1; step <= now_step + 1; step++)
	{
		char		want[TOTP_DIGITS + 1];
		uint32		v = OtpHotp(secret, sizeof(secret), (uint64) step, TOTP_DIGITS);

		snprintf(want, sizeof(want), "%0*u", TOTP_DIGITS, v);
		if (CryptoEqual(want, given, TOTP_DIGITS) && well_formed && step > after)
			matched = step;
		CryptoZero(want, sizeof(want));
	}
	CryptoZero(secret, sizeof(secret));
	CryptoZero(given, sizeof(given));
	if (matched < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(matched);
}

/*
 * _totp_code(key bytea, unix_time bigint, digits integer) -> text: the TOTP
 * code of a raw key at a time (30-second steps, HMAC-SHA1), for the RFC 6238
 * test vectors and tests that act as the authenticator app.  Internal.
 */
Datum
authctx_totp_code(PG_FUNCTION_ARGS)
{
	bytea	   *key = PG_GETARG_BYTEA_PP(0);
	int64		t = PG_GETARG_INT64(1);
	int32		digits = PG_GETARG_INT32(2);
	char		out[16];

	if (digits < 6 || digits > 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a TOTP code has 6 to 8 digits")));
	if (t < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time must not be negative")));
	snprintf(out, sizeof(out), "%0*u", digits,
			 OtpHotp((const unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
					 (uint64) (t / TOTP_PERIOD), digits));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/*
 * _recovery_codes(n integer) -> text[]: n fresh recovery codes of 100 bits
 * each, formatted xxxxx-xxxxx-xxxxx-xxxxx in Crockford's base32.
 */
Datum
authctx_recovery_codes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	Datum	   *elems;

	if (n < 1 || n > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of recovery codes must be between 1 and 100")));
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		unsigned char raw[RECOVERY_CODE_LEN];
		char		out[RECOVERY_CODE_LEN + RECOVERY_CODE_LEN / RECOVERY_GROUP];
		int			o = 0;

		/* 5 random bits per character: the low bits of a random byte */
		CryptoRandomBytes(raw, sizeof(raw));
		for (int j = 0; j < RECOVERY_CODE_LEN; j++)
		{
			if (j > 0 && j % RECOVERY_GROUP == 0)
				out[o++] = '-';
			out[o++] = crockford32[raw[j] & 0x1f];
		}
		out[o] = '\0';
		elems[i] = PointerGetDatum(cstring_to_text(out));
		CryptoZero(raw, sizeof(raw));
		CryptoZero(out, sizeof(out));
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * _recovery_verifier(user_id uuid, code text) -> bytea: the stored verifier
 * of a recovery code (case, hyphens and spaces ignored; Crockford's
 * lookalikes o, i and l read as 0, 1 and 1), or NULL when the text cannot
 * be a recovery code.
 */
Datum
authctx_recovery_verifier(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user = PG_GETARG_UUID_P(0);
	text	   *code = PG_GETARG_TEXT_PP(1);
	const char *in = VARDATA_ANY(code);
	int			len = VARSIZE_ANY_EXHDR(code);
	unsigned char buf[21 + UUID_LEN + RECOVERY_CODE_LEN];
	bytea	   *result;
	int			n = 0;

	memcpy(buf, "authctx recovery code", 21);
	memcpy(buf + 21, user->data, UUID_LEN);
	for (int i = 0; i < len; i++)
	{
		char		c = in[i];

		if (c == '-' || c == ' ')
			continue;
		if (c >= 'A' && c <= 'Z')
			c = c - 'A' + 'a';
		if (c == 'o')
			c = '0';
		else if (c == 'i' || c == 'l')
			c = '1';
		if (n == RECOVERY_CODE_LEN || strchr(crockford32, c) == NULL || c == '\0')
		{
			CryptoZero(buf, sizeof(buf));
			PG_RETURN_NULL();
		}
		buf[21 + UUID_LEN + n++] = (unsigned char) c;
	}
	if (n != RECOVERY_CODE_LEN)
	{
		CryptoZero(buf, sizeof(buf));
		PG_RETURN_NULL();
	}
	result = palloc(VARHDRSZ + AUTHCTX_TOKEN_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + AUTHCTX_TOKEN_HASH_LEN);
	TokenKeyedHash(buf, sizeof(buf), (unsigned char *) VARDATA(result));
	CryptoZero(buf, sizeof(buf));
	PG_RETURN_BYTEA_P(result);
}
