/*-------------------------------------------------------------------------
 *
 * webauthn.c
 *		WebAuthn (passkeys): challenges, COSE keys, signatures, registration.
 *
 * The SQL side (src/sql/60_webauthn.sql) owns the flow of a verification
 * and of a registration: parsing clientDataJSON, spending the challenge,
 * the rules on type, origin, crossOrigin and topOrigin, user verification
 * (authctx.webauthn_user_verification, defined here), finding or storing
 * the credential, the counter rule and the login.  C holds only what SQL
 * cannot do safely or at all:
 *
 *	- issuing a challenge: 32 bytes from libsodium's CSPRNG, stored with an
 *	  expiry taken from authctx.webauthn_challenge_ttl (this file);
 *	- a small, strict CBOR reader for the one structure we accept, the
 *	  COSE_Key of an EdDSA (Ed25519) or ES256 (P-256) credential;
 *	- checking an assertion: rpIdHash, the user-present flag and the
 *	  signature over authenticatorData || SHA-256(clientDataJSON), with
 *	  libsodium (Ed25519, SHA-256) and OpenSSL's libcrypto (P-256 ECDSA);
 *	- reading a registration's attestation object: authenticatorData with
 *	  its attested credential data and extensions, and the attestation
 *	  statement, of which only "none" and "packed" self-attestation are
 *	  taken (and not evaluated: authctx trusts no attestation);
 *	- decoding the base64url challenge of clientDataJSON (libsodium).
 *
 * The last four read attacker-supplied bytes: they are plain C, free of
 * the server, in webauthn_parse.c and base64url.c (fuzzed on their own by
 * test/fuzz); this file holds their SQL-callable wrappers.
 *
 * authctx contains no cryptography of its own: every primitive above is a
 * library call.  The CBOR reader accepts exactly the deterministic encoding
 * CTAP2 authenticators produce (definite lengths, shortest-form integers,
 * no duplicate or unknown labels, no trailing bytes) and refuses anything
 * else; so does the COSE check, which also validates the public point.
 *
 * Nothing here puts key material, signatures or challenges into a message.
 * Functions that look at attacker-supplied assertions never raise for bad
 * input: they report failure through their result, so that
 * verify_webauthn can answer NULL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "authctx.h"

PG_FUNCTION_INFO_V1(authctx_webauthn_challenge);
PG_FUNCTION_INFO_V1(authctx_webauthn_key_alg);
PG_FUNCTION_INFO_V1(authctx_webauthn_check_assertion);
PG_FUNCTION_INFO_V1(authctx_webauthn_b64url_decode);
PG_FUNCTION_INFO_V1(authctx_webauthn_parse_registration);
PG_FUNCTION_INFO_V1(authctx_webauthn_uv_policy);

/* Lifetime of an issued challenge, in seconds. */
int			authctx_webauthn_challenge_ttl = 300;

/*
 * Must a ceremony prove user verification (the UV flag)?  A passkey login
 * is passwordless, so by default it must show a PIN or biometric, not mere
 * possession.  Read by the SQL side, for assertions and registrations.
 */
typedef enum WebauthnUserVerification
{
	WEBAUTHN_UV_REQUIRED,
	WEBAUTHN_UV_PREFERRED
} WebauthnUserVerification;

static const struct config_enum_entry webauthn_uv_options[] = {
	{"required", WEBAUTHN_UV_REQUIRED, false},
	{"preferred", WEBAUTHN_UV_PREFERRED, false},
	{NULL, 0, false}
};
static int	authctx_webauthn_user_verification = WEBAUTHN_UV_REQUIRED;

#define WEBAUTHN_CHALLENGE_LEN	32
#define WEBAUTHN_CHALLENGE_SWEEP 16 /* expired rows removed per new challenge */

#define CHALLENGE_B64_MAX	1024	/* longest challenge text we decode */

/* ---------------------------------------------------------------------
 * SQL-callable functions.
 * ---------------------------------------------------------------------
 */

/*
 * authctx._webauthn_uv_policy() -> text: this backend's
 * authctx.webauthn_user_verification, read from the library's variable, so
 * that a placeholder set before the library was loaded is never what a
 * check obeys, and so that the worker deciding an attempt can be told the
 * caller's value (it sees neither SET nor ALTER ROLE ... SET of the caller).
 */
Datum
authctx_webauthn_uv_policy(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(authctx_webauthn_user_verification == WEBAUTHN_UV_PREFERRED ?
									 "preferred" : "required"));
}

/*
 * authctx.webauthn_challenge() → bytea
 *
 * A fresh challenge must come from the CSPRNG and be remembered, so that
 * verify_webauthn can tell it was issued here and spend it once.  Each call
 * also removes a few expired challenges, so that the table stays small
 * between cleanups without any call doing unbounded work.
 */
Datum
authctx_webauthn_challenge(PG_FUNCTION_ARGS)
{
	unsigned char raw[WEBAUTHN_CHALLENGE_LEN];
	bytea	   *challenge;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expires = TimestampTzPlusMilliseconds(now,
													  (int64) authctx_webauthn_challenge_ttl * 1000);
	Oid			argtypes[2] = {BYTEAOID, TIMESTAMPTZOID};
	Datum		values[2];
	int			rc;

	CryptoRandomBytes(raw, sizeof(raw));
	challenge = (bytea *) palloc(VARHDRSZ + sizeof(raw));
	SET_VARSIZE(challenge, VARHDRSZ + sizeof(raw));
	memcpy(VARDATA(challenge), raw, sizeof(raw));
	CryptoZero(raw, sizeof(raw));

	values[0] = PointerGetDatum(challenge);
	values[1] = TimestampTzGetDatum(expires);

	SPI_connect();
	rc = SPI_execute_with_args("INSERT INTO authctx.webauthn_challenges "
							   "(challenge, expires_at) VALUES ($1, $2)",
							   2, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store webauthn challenge: %s",
			 SPI_result_code_string(rc));

	values[0] = TimestampTzGetDatum(now);
	rc = SPI_execute_with_args("DELETE FROM authctx.webauthn_challenges "
							   "WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
							   "SELECT ctid FROM authctx.webauthn_challenges "
							   "WHERE expires_at OPERATOR(pg_catalog.<) $1 "
							   "LIMIT " CppAsString2(WEBAUTHN_CHALLENGE_SWEEP)
							   " FOR UPDATE SKIP LOCKED))",
							   1, &argtypes[1], values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "could not remove expired webauthn challenges: %s",
			 SPI_result_code_string(rc));
	SPI_finish();

	PG_RETURN_BYTEA_P(challenge);
}

/*
 * authctx._webauthn_key_alg(public_key bytea) → integer
 *
 * add_webauthn_credential must refuse, at registration, any key that could
 * not be used later, so the COSE_Key is parsed strictly here and its COSE
 * algorithm returned; anything else raises 22023.
 */
Datum
authctx_webauthn_key_alg(PG_FUNCTION_ARGS)
{
	bytea	   *cose = PG_GETARG_BYTEA_PP(0);
	WebauthnKey key;
	bool		ok;

	CryptoInit();
	ok = CoseKeyParse((const unsigned char *) VARDATA_ANY(cose),
					  VARSIZE_ANY_EXHDR(cose), &key) == PARSE_OK &&
		WebauthnKeyUsable(&key);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported or malformed webauthn public key"),
				 errdetail("The public key must be a COSE_Key for EdDSA (Ed25519, alg -8) or ES256 (P-256, alg -7), in CTAP2 canonical CBOR.")));
	PG_RETURN_INT32(key.alg);
}

/*
 * authctx._webauthn_check_assertion(public_key, authenticator_data,
 *									 client_data_json, signature, rp_id)
 *		→ bigint
 *
 * The checks of an assertion that need cryptography, in one place that
 * never raises for bad input: returns the authenticator's signature counter
 * when the rpIdHash is SHA-256(rp_id), the user-present flag is set and the
 * signature over authenticatorData || SHA-256(clientDataJSON) verifies with
 * the key; otherwise a negative ASSERT_* code.
 */
Datum
authctx_webauthn_check_assertion(PG_FUNCTION_ARGS)
{
	bytea	   *cose = PG_GETARG_BYTEA_PP(0);
	bytea	   *authdata = PG_GETARG_BYTEA_PP(1);
	bytea	   *clientdata = PG_GETARG_BYTEA_PP(2);
	bytea	   *sig = PG_GETARG_BYTEA_PP(3);
	text	   *rp_id = PG_GETARG_TEXT_PP(4);
	int64_t		result;

	CryptoInit();
	result = WebauthnCheckAssertion((const unsigned char *) VARDATA_ANY(cose),
									VARSIZE_ANY_EXHDR(cose),
									(const unsigned char *) VARDATA_ANY(authdata),
									VARSIZE_ANY_EXHDR(authdata),
									(const unsigned char *) VARDATA_ANY(clientdata),
									VARSIZE_ANY_EXHDR(clientdata),
									(const unsigned char *) VARDATA_ANY(sig),
									VARSIZE_ANY_EXHDR(sig),
									VARDATA_ANY(rp_id), VARSIZE_ANY_EXHDR(rp_id));
	if (result == ASSERT_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	PG_RETURN_INT64(result);
}

/*
 * authctx._webauthn_b64url_decode(text) → bytea
 *
 * clientDataJSON carries the challenge in base64url without padding; only
 * the canonical encoding is accepted (libsodium refuses padding, other
 * alphabets, whitespace and non-zero spare bits), so that one challenge has
 * one spelling.  NULL when the text is not such an encoding.
 */
Datum
authctx_webauthn_b64url_decode(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	size_t		inlen = VARSIZE_ANY_EXHDR(in);
	size_t		maxlen = B64URL_DECODED_MAX(inlen);
	size_t		outlen = 0;
	bytea	   *out;

	if (inlen > CHALLENGE_B64_MAX)
		PG_RETURN_NULL();
	out = (bytea *) palloc(VARHDRSZ + maxlen);
	CryptoInit();
	if (B64urlDecode(VARDATA_ANY(in), inlen, (unsigned char *) VARDATA(out),
					 maxlen, &outlen) != PARSE_OK)
		PG_RETURN_NULL();
	SET_VARSIZE(out, VARHDRSZ + outlen);
	PG_RETURN_BYTEA_P(out);
}

/*
 * authctx._webauthn_parse_registration(attestation_object bytea, rp_id text,
 *		OUT status integer, OUT credential_id bytea, OUT public_key bytea,
 *		OUT alg integer, OUT sign_count bigint, OUT flags integer,
 *		OUT fmt text)
 *
 * register_webauthn must store nothing an attacker shaped beyond what the
 * ceremony allows, so the attestation object is read here, strictly, by
 * WebauthnRegistrationParse: status 0 with the credential (its COSE_Key
 * exactly as the authenticator sent it), or a negative REGISTER_* code and
 * NULLs.  Never raises for bad input; the user-verification rule is the
 * caller's (flags).
 */
Datum
authctx_webauthn_parse_registration(PG_FUNCTION_ARGS)
{
	bytea	   *att = PG_GETARG_BYTEA_PP(0);
	text	   *rp_id = PG_GETARG_TEXT_PP(1);
	WebauthnRegistration reg;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, true, true, true, true, true, true};
	int			status;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	CryptoInit();
	status = WebauthnRegistrationParse((const unsigned char *) VARDATA_ANY(att),
									   VARSIZE_ANY_EXHDR(att),
									   VARDATA_ANY(rp_id), VARSIZE_ANY_EXHDR(rp_id),
									   &reg);
	values[0] = Int32GetDatum(status);
	if (status == 0)
	{
		bytea	   *cred = (bytea *) palloc(VARHDRSZ + reg.cred_id_len);
		bytea	   *cose = (bytea *) palloc(VARHDRSZ + reg.cose_len);

		SET_VARSIZE(cred, VARHDRSZ + reg.cred_id_len);
		memcpy(VARDATA(cred), reg.cred_id, reg.cred_id_len);
		SET_VARSIZE(cose, VARHDRSZ + reg.cose_len);
		memcpy(VARDATA(cose), reg.cose, reg.cose_len);
		values[1] = PointerGetDatum(cred);
		values[2] = PointerGetDatum(cose);
		values[3] = Int32GetDatum(reg.key.alg);
		values[4] = Int64GetDatum((int64) reg.ad.sign_count);
		values[5] = Int32GetDatum((int32) reg.ad.flags);
		values[6] = PointerGetDatum(cstring_to_text_with_len((const char *) reg.fmt,
															 (int) reg.fmt_len));
		memset(nulls, false, sizeof(nulls));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Define the WebAuthn settings. */
void
WebauthnInit(void)
{
	DefineCustomIntVariable("authctx.webauthn_challenge_ttl",
							"How long a WebAuthn challenge stays valid after webauthn_challenge() issues it.",
							NULL,
							&authctx_webauthn_challenge_ttl,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomEnumVariable("authctx.webauthn_user_verification",
							 "Whether a passkey login or registration must prove user verification (PIN or biometric).",
							 "required: the authenticator's user-verified flag must be set; preferred: user presence is enough.",
							 &authctx_webauthn_user_verification,
							 WEBAUTHN_UV_REQUIRED, webauthn_uv_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}
