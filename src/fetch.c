/*-------------------------------------------------------------------------
 *
 * fetch.c
 *		Read one row of an authctx table by a unique index, without SPI.
 *
 * The request path (session.c, tenant.c) looks rows up by primary key on
 * every cache miss.  Going through SPI costs a plan-cache check, executor
 * start-up and shutdown per query; a direct index scan costs a few
 * microseconds.  FetchRow() opens the table and index by name in schema
 * authctx (syscache lookups, cheap), scans with the snapshot it is given,
 * and copies the wanted columns out by name.  It reads, never writes, and
 * checks no privilege: callers are authctx's own C code.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "storage/lockdefs.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "authctx.h"

/* Oid of relation name in schema authctx; ERROR if it is not there. */
static Oid
FetchRelid(const char *name)
{
	Oid			nsp = get_namespace_oid("authctx", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"authctx.%s\" does not exist", name),
				 errhint("Is the authctx extension installed in this database?")));
	return relid;
}

/*
 * The first row of table relname, in the order of index idxname, whose
 * index columns compare with keys by strategy (equality or >=) through
 * procs; its columns named in cols go to values/nulls.  Returns how many
 * such rows there are, counting no further than limit (at least 1).
 */
static int
FetchRowBy(const char *relname, const char *idxname, int nkeys,
		   const Datum *keys, const Oid *procs, StrategyNumber strategy,
		   Snapshot snap, int ncols, const char *const *cols,
		   Datum *values, bool *nulls, int limit)
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData sk[INDEX_MAX_KEYS];
	int			found = 0;

	Assert(nkeys <= INDEX_MAX_KEYS);
	rel = table_open(FetchRelid(relname), AccessShareLock);
	idx = index_open(FetchRelid(idxname), AccessShareLock);

	for (int i = 0; i < nkeys; i++)
		ScanKeyEntryInitialize(&sk[i], 0, i + 1, strategy,
							   InvalidOid, idx->rd_indcollation[i],
							   procs[i], keys[i]);

	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, snap, nkeys, 0);
	index_rescan(scan, sk, nkeys, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		TupleDesc	desc = RelationGetDescr(rel);

		found = 1;
		for (int c = 0; c < ncols; c++)
		{
			AttrNumber	att = get_attnum(RelationGetRelid(rel), cols[c]);
			Form_pg_attribute attr;

			if (att == InvalidAttrNumber)
				elog(ERROR, "column \"%s\" of authctx.%s does not exist", cols[c], relname);
			attr = TupleDescAttr(desc, att - 1);
			values[c] = slot_getattr(slot, att, &nulls[c]);
			if (!nulls[c])
				values[c] = datumCopy(values[c], attr->attbyval, attr->attlen);
		}
		while (found < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
			found++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Find the row of table relname whose unique index idxname matches keys
 * (one per index column, compared with the given equality functions), and
 * copy the columns named in cols into values/nulls.  Returns false when no
 * row is visible under snap.
 */
bool
FetchRow(const char *relname, const char *idxname, int nkeys,
		 const Datum *keys, const Oid *eqprocs, Snapshot snap,
		 int ncols, const char *const *cols, Datum *values, bool *nulls)
{
	return FetchRowBy(relname, idxname, nkeys, keys, eqprocs,
					  BTEqualStrategyNumber, snap, ncols, cols, values, nulls, 1) > 0;
}

/*
 * As FetchRow, over an index that need not be unique: the first matching
 * row's columns, and how many rows match, counting no further than limit.
 */
int
FetchRows(const char *relname, const char *idxname, int nkeys,
		  const Datum *keys, const Oid *eqprocs, Snapshot snap, int limit,
		  int ncols, const char *const *cols, Datum *values, bool *nulls)
{
	return FetchRowBy(relname, idxname, nkeys, keys, eqprocs,
					  BTEqualStrategyNumber, snap, ncols, cols, values, nulls,
					  Max(limit, 1));
}

/*
 * The first row whose single-column unique index idxname is >= key (geproc
 * is the >= function): the row that follows a key that is not there.
 */
bool
FetchRowAtLeast(const char *relname, const char *idxname, Datum key,
				Oid geproc, Snapshot snap, int ncols, const char *const *cols,
				Datum *values, bool *nulls)
{
	return FetchRowBy(relname, idxname, 1, &key, &geproc,
					  BTGreaterEqualStrategyNumber, snap, ncols, cols, values, nulls, 1) > 0;
}
