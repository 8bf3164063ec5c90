/*-------------------------------------------------------------------------
 *
 * sjson.h
 *		A strict JSON reader (RFC 8259) over a byte buffer, in plain C.
 *
 * No PostgreSQL dependency and no allocation: the caller hands in an array
 * of nodes and a scratch buffer, so that a libFuzzer harness can drive the
 * reader as easily as the server does.  See sjson.c for what is refused.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_SJSON_H
#define AUTHCTX_SJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds the reader enforces whatever the caller's arrays allow. */
#define SJSON_MAX_MEMBERS		512	/* members of one object */
#define SJSON_MAX_NUMBER_LEN	64	/* characters of one number */
#define SJSON_MAX_EXPONENT		1000	/* |exponent| of one number */
#define SJSON_MAX_TEXT			(64 * 1024 * 1024)	/* offsets fit in 32 bits */

typedef enum SjsonType
{
	SJSON_NULL = 1,
	SJSON_FALSE,
	SJSON_TRUE,
	SJSON_NUMBER,
	SJSON_STRING,
	SJSON_ARRAY,
	SJSON_OBJECT
} SjsonType;

typedef enum SjsonStatus
{
	SJSON_OK = 0,
	SJSON_ERR_SYNTAX,			/* not JSON text */
	SJSON_ERR_TRAILING,			/* something other than whitespace after it */
	SJSON_ERR_DEPTH,			/* nested deeper than the caller allows */
	SJSON_ERR_TOO_BIG,			/* more values or members than allowed */
	SJSON_ERR_DUPLICATE,		/* an object names one member twice */
	SJSON_ERR_STRING,			/* bad UTF-8, raw control character, bad
								 * escape, lone surrogate, or U+0000 */
	SJSON_ERR_NUMBER			/* a number longer or larger than allowed */
} SjsonStatus;

/*
 * One value.  Nodes are stored in document order: a container is followed
 * by its children (an object by key, value, key, value...), and "next"
 * skips over the whole subtree.
 */
typedef struct SjsonNode
{
	uint8_t		type;			/* an SjsonType */
	uint32_t	start;			/* offset of the value's text in the input */
	uint32_t	len;			/* length of that text */
	uint32_t	count;			/* arrays: elements; objects: members */
	uint32_t	next;			/* index of the node after this subtree */
	uint32_t	str;			/* strings: offset of the decoded, NUL-ended
								 * UTF-8 in the scratch buffer */
	uint32_t	slen;			/* strings: decoded length in bytes */
} SjsonNode;

/* A parsed document: the input, its nodes and its decoded strings. */
typedef struct SjsonDoc
{
	const char *text;			/* the input (not copied) */
	size_t		len;
	SjsonNode  *nodes;			/* caller's array */
	uint32_t	nnodes;
	uint32_t	maxnodes;
	char	   *scratch;		/* caller's buffer, at least len bytes */
	size_t		scratch_used;
	size_t		scratch_size;
	int			maxdepth;		/* containers nested at most this deep */
} SjsonDoc;

extern void SjsonInit(SjsonDoc *doc, SjsonNode *nodes, uint32_t maxnodes,
					  char *scratch, size_t scratch_size, int maxdepth);
extern SjsonStatus SjsonParse(SjsonDoc *doc, const char *text, size_t len);
extern const char *SjsonStatusName(SjsonStatus status);

/* Navigation over a parsed document (node 0 is the top-level value). */
extern int32_t SjsonGet(const SjsonDoc *doc, uint32_t object, const char *name);
extern bool SjsonStrEq(const SjsonDoc *doc, uint32_t node,
					   const char *s, size_t len);

/* The decoded string of a string node (NUL-terminated). */
static inline const char *
SjsonStr(const SjsonDoc *doc, uint32_t node)
{
	return doc->scratch + doc->nodes[node].str;
}

/* The first child of a container (the first key, for an object). */
static inline uint32_t
SjsonFirst(uint32_t container)
{
	return container + 1;
}

/* The sibling after node (for an object's value: the next key). */
static inline uint32_t
SjsonNext(const SjsonDoc *doc, uint32_t node)
{
	return doc->nodes[node].next;
}

#endif							/* AUTHCTX_SJSON_H */
