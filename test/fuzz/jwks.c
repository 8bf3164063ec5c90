/*
 * jwks.c
 *		libFuzzer target: JWK Set parsing and key validation (src/jwk.c,
 *		src/pkey.c).
 *
 * Any input as a JWK Set.  Every key reported usable must have the stored
 * form its type implies, and that form must load back into a key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwk.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static JwksWork work;
	static JwkKey keys[JWKS_MAX_KEYS];
	char	   *text = malloc(size ? size : 1);
	int			nkeys;

	memcpy(text, data, size);
	if (JwksParse(text, size, &work, keys, JWKS_MAX_KEYS, &nkeys) == JWKS_OK)
	{
		for (int i = 0; i < nkeys; i++)
		{
			EVP_PKEY   *pkey = NULL;

			if (keys[i].status != JWK_OK)
				continue;
			switch (keys[i].kty)
			{
				case JWK_KTY_OKP:
					if (keys[i].publen != PKEY_ED25519_LEN || !PkeyEd25519Valid(keys[i].pub))
						abort();
					break;
				case JWK_KTY_EC:
					if (keys[i].publen != PKEY_P256_POINT_LEN ||
						(pkey = PkeyP256FromPoint(keys[i].pub, false)) == NULL)
						abort();
					break;
				case JWK_KTY_RSA:
					if ((pkey = PkeyRsaFromDer(keys[i].pub, keys[i].publen)) == NULL)
						abort();
					break;
				default:
					abort();
			}
			PkeyFree(pkey);
		}
	}
	free(text);
	return 0;
}
