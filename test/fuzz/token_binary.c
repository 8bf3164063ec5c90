/*
 * token_binary: the binary form of authctx.token (authctx_token_recv).
 *
 * Input: the bytes after the length word of a binary parameter.
 * Properties: a token that decodes is exactly its bytes, and survives a
 * round trip through the text form.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AuthctxToken tok;
	AuthctxToken again;
	char		text[AUTHCTX_TOKEN_TEXT_LEN + 1];

	if (TokenDecodeBinary(data, size, &tok) != PARSE_OK)
		return 0;
	FUZZ_CHECK(size == AUTHCTX_TOKEN_SIZE);
	FUZZ_CHECK(memcmp(&tok, data, AUTHCTX_TOKEN_SIZE) == 0);
	FUZZ_CHECK(TokenEncodeText(&tok, text));
	FUZZ_CHECK(strlen(text) == AUTHCTX_TOKEN_TEXT_LEN);
	FUZZ_CHECK(TokenDecodeText(text, strlen(text), &again) == PARSE_OK);
	FUZZ_CHECK(memcmp(&tok, &again, sizeof(tok)) == 0);
	return 0;
}
