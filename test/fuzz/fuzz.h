/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		What every libFuzzer target of test/fuzz shares.
 *
 * Each test/fuzz/<target>.c is one target: it includes this header once,
 * defines LLVMFuzzerTestOneInput, and is linked with every parser of
 * src/parse.h (the Makefile's PARSER_SRCS), libsodium and libcrypto.  A
 * target checks properties as well as surviving: FUZZ_CHECK aborts, and
 * libFuzzer saves the input that broke it, like a crash.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_FUZZ_H
#define AUTHCTX_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "parse.h"

/* A property that must hold for every input. */
#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: property failed: %s\n", \
					__FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parsers expect an initialised libsodium, as CryptoInit gives them. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	if (sodium_init() < 0)
		abort();
	return 0;
}

/*
 * Structured inputs: the next field of *data, as a 2-byte big-endian length
 * and that many bytes (fewer if the input ends first).  The field is copied
 * to a buffer of exactly its length, so that AddressSanitizer sees a read
 * past its end; free it with free().
 */
static inline uint8_t *
FuzzField(const uint8_t **data, size_t *size, size_t *len)
{
	uint8_t    *copy;
	size_t		n = 0;

	if (*size >= 2)
	{
		n = ((size_t) (*data)[0] << 8) | (*data)[1];
		*data += 2;
		*size -= 2;
	}
	else
	{
		*data += *size;
		*size = 0;
	}
	if (n > *size)
		n = *size;
	copy = malloc(n ? n : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, *data, n);
	*data += n;
	*size -= n;
	*len = n;
	return copy;
}

/* The rest of the input as a NUL-terminated string (interior NULs end it). */
static inline char *
FuzzString(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif							/* AUTHCTX_FUZZ_H */
