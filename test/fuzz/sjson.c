/*
 * sjson.c
 *		libFuzzer target: the strict JSON reader (src/sjson.c).
 *
 * Any input: parse it with small and large node arrays and depths, and
 * walk every object's members through SjsonGet, so that a node array the
 * parser left inconsistent shows up as an ASan report.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sjson.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Look up every member name of every object again: it must be found. */
static void
walk(const SjsonDoc *doc)
{
	for (uint32_t i = 0; i < doc->nnodes; i++)
	{
		uint32_t	key;

		if (doc->nodes[i].type != SJSON_OBJECT)
			continue;
		key = SjsonFirst(i);
		for (uint32_t m = 0; m < doc->nodes[i].count; m++)
		{
			if (SjsonGet(doc, i, SjsonStr(doc, key)) != (int32_t) (key + 1))
				abort();		/* names are unique and NUL-free */
			key = SjsonNext(doc, key + 1);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static SjsonNode nodes[4096];
	SjsonDoc	doc;
	char	   *scratch = malloc(size + 1);
	char	   *text = malloc(size + 1);	/* exact-size copy: ASan sees overreads */

	memcpy(text, data, size);
	SjsonInit(&doc, nodes, 4096, scratch, size, 32);
	if (SjsonParse(&doc, text, size) == SJSON_OK)
	{
		if (doc.nnodes == 0 || doc.nodes[0].next != doc.nnodes ||
			doc.scratch_used > size)
			abort();
		walk(&doc);
	}
	SjsonInit(&doc, nodes, 7, scratch, size, 2);
	(void) SjsonParse(&doc, text, size);
	free(scratch);
	free(text);
	return 0;
}
