/*-------------------------------------------------------------------------
 *
 * sjson.c
 *		A strict JSON reader (RFC 8259) over a byte buffer, in plain C.
 *
 * JWT headers and claims, and JWK sets, are JSON written by someone else;
 * the claims of a token are read before its signature is checked (the
 * issuer named inside chooses the key).  So the reader accepts exactly
 * RFC 8259 JSON text and refuses, with a status code and never a crash:
 *
 *	- anything after the top-level value but whitespace (space, tab, LF, CR);
 *	  a byte order mark, comments, single quotes, trailing commas, NaN;
 *	- an object naming one member twice, at any depth (member names are
 *	  compared after unescaping, so "s\u0075b" and "sub" are one name);
 *	- strings that are not valid UTF-8 (overlong forms, surrogates,
 *	  code points past U+10FFFF), that hold a raw control character, an
 *	  unknown escape, a lone or reversed surrogate escape, or U+0000 (which
 *	  PostgreSQL text cannot hold);
 *	- numbers longer than SJSON_MAX_NUMBER_LEN characters or with an
 *	  exponent beyond +-SJSON_MAX_EXPONENT (RFC 8259 section 9 lets a parser
 *	  limit range and precision; these bounds keep every accepted number
 *	  convertible to PostgreSQL numeric);
 *	- containers nested deeper than the caller's bound, objects of more than
 *	  SJSON_MAX_MEMBERS members, or more values than the caller's node array
 *	  holds.
 *
 * The reader allocates nothing.  It writes one node per value into the
 * caller's array (document order, see sjson.h) and the decoded form of each
 * string, NUL-terminated, into the caller's scratch buffer; a decoded
 * string is never longer than its quoted text, so a scratch buffer as long
 * as the input always suffices.  Recursion depth is bounded by maxdepth
 * (itself clamped to SJSON_DEPTH_LIMIT).  Duplicate member names are found
 * by comparing each pair of an object's names: quadratic, but bounded by
 * SJSON_MAX_MEMBERS.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "parse.h"
#include "sjson.h"

#define SJSON_DEPTH_LIMIT	64

/* Parser state: the document being filled and the read position. */
typedef struct SjsonParser
{
	SjsonDoc   *doc;
	const unsigned char *s;		/* the input */
	size_t		pos;			/* next unread byte */
	size_t		len;
} SjsonParser;

static SjsonStatus SjsonValue(SjsonParser *p, int depth);

/* Prepare doc to parse into the caller's node array and scratch buffer. */
void
SjsonInit(SjsonDoc *doc, SjsonNode *nodes, uint32_t maxnodes,
		  char *scratch, size_t scratch_size, int maxdepth)
{
	memset(doc, 0, sizeof(*doc));
	doc->nodes = nodes;
	doc->maxnodes = maxnodes;
	doc->scratch = scratch;
	doc->scratch_size = scratch_size;
	if (maxdepth < 1)
		maxdepth = 1;
	if (maxdepth > SJSON_DEPTH_LIMIT)
		maxdepth = SJSON_DEPTH_LIMIT;
	doc->maxdepth = maxdepth;
}

/* A name for each status, for tests and diagnostics. */
const char *
SjsonStatusName(SjsonStatus status)
{
	switch (status)
	{
		case SJSON_OK:
			return "ok";
		case SJSON_ERR_SYNTAX:
			return "syntax";
		case SJSON_ERR_TRAILING:
			return "trailing data";
		case SJSON_ERR_DEPTH:
			return "too deep";
		case SJSON_ERR_TOO_BIG:
			return "too big";
		case SJSON_ERR_DUPLICATE:
			return "duplicate member";
		case SJSON_ERR_STRING:
			return "bad string";
		case SJSON_ERR_NUMBER:
			return "bad number";
	}
	return "unknown";
}

/* Skip the four whitespace characters RFC 8259 allows between tokens. */
static void
SjsonSkipSpace(SjsonParser *p)
{
	while (p->pos < p->len)
	{
		unsigned char c = p->s[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* Append a node of the given type starting at the current position. */
static SjsonStatus
SjsonNewNode(SjsonParser *p, SjsonType type, uint32_t *index)
{
	SjsonDoc   *doc = p->doc;
	SjsonNode  *n;

	if (doc->nnodes >= doc->maxnodes)
		return SJSON_ERR_TOO_BIG;
	*index = doc->nnodes++;
	n = &doc->nodes[*index];
	memset(n, 0, sizeof(*n));
	n->type = (uint8_t) type;
	n->start = (uint32_t) p->pos;
	return SJSON_OK;
}

/* Close node index: its text ends here and its subtree ends with the last node. */
static void
SjsonEndNode(SjsonParser *p, uint32_t index)
{
	SjsonNode  *n = &p->doc->nodes[index];

	n->len = (uint32_t) (p->pos - n->start);
	n->next = p->doc->nnodes;
}

/* Read the four hex digits of a \u escape at the current position. */
static bool
SjsonHex4(SjsonParser *p, uint32_t *cp)
{
	uint32_t	v = 0;

	if (p->len - p->pos < 4)
		return false;
	for (int i = 0; i < 4; i++)
	{
		int			d = HexDigitValue((unsigned char) p->s[p->pos + i]);

		if (d < 0)
			return false;
		v = (v << 4) | (uint32_t) d;
	}
	p->pos += 4;
	*cp = v;
	return true;
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most avail bytes), or 0:
 * the shortest form only, no surrogates, nothing past U+10FFFF (RFC 3629).
 */
static size_t
SjsonUtf8Len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80,
				hi = 0xbf;
	size_t		n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
	{
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;			/* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f;			/* no surrogates */
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		n = 4;
		if (c == 0xf0)
			lo = 0x90;			/* no overlong forms */
		else if (c == 0xf4)
			hi = 0x8f;			/* nothing past U+10FFFF */
	}
	else
		return 0;
	if (avail < n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* Append code point cp (valid, non-zero, not a surrogate) as UTF-8. */
static void
SjsonPutUtf8(char *out, size_t *o, uint32_t cp)
{
	if (cp < 0x80)
		out[(*o)++] = (char) cp;
	else if (cp < 0x800)
	{
		out[(*o)++] = (char) (0xc0 | (cp >> 6));
		out[(*o)++] = (char) (0x80 | (cp & 0x3f));
	}
	else if (cp < 0x10000)
	{
		out[(*o)++] = (char) (0xe0 | (cp >> 12));
		out[(*o)++] = (char) (0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char) (0x80 | (cp & 0x3f));
	}
	else
	{
		out[(*o)++] = (char) (0xf0 | (cp >> 18));
		out[(*o)++] = (char) (0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char) (0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char) (0x80 | (cp & 0x3f));
	}
}

/*
 * Read the string at the current position (an opening quote) into a new
 * node, decoding it into the scratch buffer.
 */
static SjsonStatus
SjsonString(SjsonParser *p)
{
	SjsonDoc   *doc = p->doc;
	uint32_t	index;
	SjsonStatus st;
	char	   *out = doc->scratch + doc->scratch_used;
	size_t		room = doc->scratch_size - doc->scratch_used;
	size_t		o = 0;

	if ((st = SjsonNewNode(p, SJSON_STRING, &index)) != SJSON_OK)
		return st;
	p->pos++;					/* the opening quote */
	for (;;)
	{
		unsigned char c;

		if (p->pos >= p->len)
			return SJSON_ERR_SYNTAX;	/* unterminated */
		c = p->s[p->pos];
		if (c == '"')
		{
			if (room - o < 1)
				return SJSON_ERR_TOO_BIG;
			p->pos++;
			break;
		}
		if (c < 0x20)
			return SJSON_ERR_STRING;	/* raw control character */
		if (c == '\\')
		{
			uint32_t	cp;

			if (p->len - p->pos < 2)
				return SJSON_ERR_SYNTAX;
			if (room - o < 2)
				return SJSON_ERR_TOO_BIG;
			c = p->s[p->pos + 1];
			p->pos += 2;
			switch (c)
			{
				case '"':
				case '\\':
				case '/':
					out[o++] = (char) c;
					continue;
				case 'b':
					out[o++] = '\b';
					continue;
				case 'f':
					out[o++] = '\f';
					continue;
				case 'n':
					out[o++] = '\n';
					continue;
				case 'r':
					out[o++] = '\r';
					continue;
				case 't':
					out[o++] = '\t';
					continue;
				case 'u':
					break;
				default:
					return SJSON_ERR_STRING;
			}
			if (!SjsonHex4(p, &cp))
				return SJSON_ERR_STRING;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return SJSON_ERR_STRING;	/* low surrogate first */
			if (cp >= 0xd800 && cp <= 0xdbff)
			{
				uint32_t	low;

				if (p->len - p->pos < 2 || p->s[p->pos] != '\\' ||
					p->s[p->pos + 1] != 'u')
					return SJSON_ERR_STRING;	/* lone high surrogate */
				p->pos += 2;
				if (!SjsonHex4(p, &low) || low < 0xdc00 || low > 0xdfff)
					return SJSON_ERR_STRING;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
			}
			if (cp == 0)
				return SJSON_ERR_STRING;	/* U+0000 */
			if (room - o < (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4) + 1)
				return SJSON_ERR_TOO_BIG;
			SjsonPutUtf8(out, &o, cp);
			continue;
		}
		if (c < 0x80)
		{
			if (room - o < 2)
				return SJSON_ERR_TOO_BIG;
			out[o++] = (char) c;
			p->pos++;
		}
		else
		{
			size_t		n = SjsonUtf8Len(p->s + p->pos, p->len - p->pos);

			if (n == 0)
				return SJSON_ERR_STRING;
			if (room - o < n + 1)
				return SJSON_ERR_TOO_BIG;
			memcpy(out + o, p->s + p->pos, n);
			o += n;
			p->pos += n;
		}
	}
	out[o] = '\0';
	doc->nodes[index].str = (uint32_t) doc->scratch_used;
	doc->nodes[index].slen = (uint32_t) o;
	doc->scratch_used += o + 1;
	SjsonEndNode(p, index);
	return SJSON_OK;
}

/* Is this byte a decimal digit? */
static inline bool
SjsonDigit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Read the number at the current position:
 *	-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?
 * within the length and exponent bounds.
 */
static SjsonStatus
SjsonNumber(SjsonParser *p)
{
	uint32_t	index;
	SjsonStatus st;
	size_t		start = p->pos;

	if ((st = SjsonNewNode(p, SJSON_NUMBER, &index)) != SJSON_OK)
		return st;
	if (p->s[p->pos] == '-')
		p->pos++;
	if (p->pos >= p->len || !SjsonDigit(p->s[p->pos]))
		return SJSON_ERR_SYNTAX;
	if (p->s[p->pos] == '0')
		p->pos++;				/* a leading zero stands alone */
	else
		while (p->pos < p->len && SjsonDigit(p->s[p->pos]))
			p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '.')
	{
		p->pos++;
		if (p->pos >= p->len || !SjsonDigit(p->s[p->pos]))
			return SJSON_ERR_SYNTAX;
		while (p->pos < p->len && SjsonDigit(p->s[p->pos]))
			p->pos++;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
	{
		long		exponent = 0;

		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if (p->pos >= p->len || !SjsonDigit(p->s[p->pos]))
			return SJSON_ERR_SYNTAX;
		while (p->pos < p->len && SjsonDigit(p->s[p->pos]))
		{
			if (exponent <= SJSON_MAX_EXPONENT)
				exponent = exponent * 10 + (p->s[p->pos] - '0');
			p->pos++;
		}
		if (exponent > SJSON_MAX_EXPONENT)
			return SJSON_ERR_NUMBER;
	}
	if (p->pos - start > SJSON_MAX_NUMBER_LEN)
		return SJSON_ERR_NUMBER;
	SjsonEndNode(p, index);
	return SJSON_OK;
}

/* Read one of the literals true, false, null. */
static SjsonStatus
SjsonLiteral(SjsonParser *p, const char *word, SjsonType type)
{
	size_t		n = strlen(word);
	uint32_t	index;
	SjsonStatus st;

	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
		return SJSON_ERR_SYNTAX;
	if ((st = SjsonNewNode(p, type, &index)) != SJSON_OK)
		return st;
	p->pos += n;
	SjsonEndNode(p, index);
	return SJSON_OK;
}

/* Refuse an object (node index) that names a member twice. */
static SjsonStatus
SjsonCheckDuplicates(const SjsonDoc *doc, uint32_t object)
{
	uint32_t	a = SjsonFirst(object);

	for (uint32_t i = 0; i < doc->nodes[object].count; i++)
	{
		const SjsonNode *ka = &doc->nodes[a];
		uint32_t	b = SjsonNext(doc, a + 1);

		for (uint32_t j = i + 1; j < doc->nodes[object].count; j++)
		{
			const SjsonNode *kb = &doc->nodes[b];

			if (ka->slen == kb->slen &&
				memcmp(doc->scratch + ka->str, doc->scratch + kb->str, ka->slen) == 0)
				return SJSON_ERR_DUPLICATE;
			b = SjsonNext(doc, b + 1);
		}
		a = SjsonNext(doc, a + 1);
	}
	return SJSON_OK;
}

/* Read an object at the current position; depth counts enclosing containers. */
static SjsonStatus
SjsonObject(SjsonParser *p, int depth)
{
	uint32_t	index;
	uint32_t	count = 0;
	SjsonStatus st;

	if (depth >= p->doc->maxdepth)
		return SJSON_ERR_DEPTH;
	if ((st = SjsonNewNode(p, SJSON_OBJECT, &index)) != SJSON_OK)
		return st;
	p->pos++;
	SjsonSkipSpace(p);
	if (p->pos < p->len && p->s[p->pos] == '}')
		p->pos++;
	else
		for (;;)
		{
			if (p->pos >= p->len || p->s[p->pos] != '"')
				return SJSON_ERR_SYNTAX;
			if (++count > SJSON_MAX_MEMBERS)
				return SJSON_ERR_TOO_BIG;
			if ((st = SjsonString(p)) != SJSON_OK)
				return st;
			SjsonSkipSpace(p);
			if (p->pos >= p->len || p->s[p->pos] != ':')
				return SJSON_ERR_SYNTAX;
			p->pos++;
			if ((st = SjsonValue(p, depth + 1)) != SJSON_OK)
				return st;
			SjsonSkipSpace(p);
			if (p->pos >= p->len)
				return SJSON_ERR_SYNTAX;
			if (p->s[p->pos] == '}')
			{
				p->pos++;
				break;
			}
			if (p->s[p->pos] != ',')
				return SJSON_ERR_SYNTAX;
			p->pos++;
			SjsonSkipSpace(p);
		}
	p->doc->nodes[index].count = count;
	SjsonEndNode(p, index);
	return SjsonCheckDuplicates(p->doc, index);
}

/* Read an array at the current position. */
static SjsonStatus
SjsonArray(SjsonParser *p, int depth)
{
	uint32_t	index;
	uint32_t	count = 0;
	SjsonStatus st;

	if (depth >= p->doc->maxdepth)
		return SJSON_ERR_DEPTH;
	if ((st = SjsonNewNode(p, SJSON_ARRAY, &index)) != SJSON_OK)
		return st;
	p->pos++;
	SjsonSkipSpace(p);
	if (p->pos < p->len && p->s[p->pos] == ']')
		p->pos++;
	else
		for (;;)
		{
			count++;
			if ((st = SjsonValue(p, depth + 1)) != SJSON_OK)
				return st;
			SjsonSkipSpace(p);
			if (p->pos >= p->len)
				return SJSON_ERR_SYNTAX;
			if (p->s[p->pos] == ']')
			{
				p->pos++;
				break;
			}
			if (p->s[p->pos] != ',')
				return SJSON_ERR_SYNTAX;
			p->pos++;
		}
	p->doc->nodes[index].count = count;
	SjsonEndNode(p, index);
	return SJSON_OK;
}

/* Read any value at the current position (after optional whitespace). */
static SjsonStatus
SjsonValue(SjsonParser *p, int depth)
{
	SjsonSkipSpace(p);
	if (p->pos >= p->len)
		return SJSON_ERR_SYNTAX;
	switch (p->s[p->pos])
	{
		case '{':
			return SjsonObject(p, depth);
		case '[':
			return SjsonArray(p, depth);
		case '"':
			return SjsonString(p);
		case 't':
			return SjsonLiteral(p, "true", SJSON_TRUE);
		case 'f':
			return SjsonLiteral(p, "false", SJSON_FALSE);
		case 'n':
			return SjsonLiteral(p, "null", SJSON_NULL);
		default:
			if (p->s[p->pos] == '-' || SjsonDigit(p->s[p->pos]))
				return SjsonNumber(p);
			return SJSON_ERR_SYNTAX;
	}
}

/*
 * Parse text (len bytes, not necessarily NUL-terminated) as one JSON value
 * into doc.  On failure doc's nodes are meaningless.
 */
SjsonStatus
SjsonParse(SjsonDoc *doc, const char *text, size_t len)
{
	SjsonParser p;
	SjsonStatus st;

	doc->text = text;
	doc->len = len;
	doc->nnodes = 0;
	doc->scratch_used = 0;
	if (len > SJSON_MAX_TEXT)
		return SJSON_ERR_TOO_BIG;
	p.doc = doc;
	p.s = (const unsigned char *) text;
	p.pos = 0;
	p.len = len;
	if ((st = SjsonValue(&p, 0)) != SJSON_OK)
		return st;
	SjsonSkipSpace(&p);
	if (p.pos != p.len)
		return SJSON_ERR_TRAILING;
	return SJSON_OK;
}

/* The value of member name of object, or -1 (also when object is not one). */
int32_t
SjsonGet(const SjsonDoc *doc, uint32_t object, const char *name)
{
	size_t		n = strlen(name);
	uint32_t	key;

	if (object >= doc->nnodes || doc->nodes[object].type != SJSON_OBJECT)
		return -1;
	key = SjsonFirst(object);
	for (uint32_t i = 0; i < doc->nodes[object].count; i++)
	{
		if (SjsonStrEq(doc, key, name, n))
			return (int32_t) (key + 1);
		key = SjsonNext(doc, key + 1);
	}
	return -1;
}

/* Is node a string equal (after unescaping) to the len bytes at s? */
bool
SjsonStrEq(const SjsonDoc *doc, uint32_t node, const char *s, size_t len)
{
	const SjsonNode *n = &doc->nodes[node];

	return n->type == SJSON_STRING && n->slen == len &&
		memcmp(doc->scratch + n->str, s, len) == 0;
}
