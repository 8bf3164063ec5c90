/*-------------------------------------------------------------------------
 *
 * cache_coherence.c
 *		The shared-memory cache's generation protocol: when an entry may be
 *		used, and how a committed change makes entries stale.
 *
 * cache.c is the store (shared memory, partitions, entries); this file is
 * what keeps it coherent with the tables: the generation slots, the stamp
 * of a fill, the check of a hit, and the invalidation that triggers pend
 * and transaction callbacks publish.  cache_internal.h is what the two
 * files share.
 *
 * Coherence: the generation protocol
 * ----------------------------------
 * Shared memory holds a global 64-bit clock and an array of slots, each a
 * pair (gen, busy).  A user id maps to slot hash(database, user); a token
 * (a session or an API key) to slot hash(database, kind, token id); a
 * database also has an "epoch" slot (everything in it) and a "tenant" slot
 * (tenant ids and slugs), hashed the same way.  All of them share one
 * array: different users or tokens may share a slot, and a token may share
 * one with a user; that only costs spurious misses, never a wrong answer.
 *
 * What an entry depends on.  A session or API key entry depends on three
 * slots: its token's, its user's (the user id stored in the entry) and the
 * epoch.  Everything it holds comes either from its own row in sessions or
 * api_keys (user, tenant, verifier, expiry, scopes, revocation), guarded by
 * the token slot, or from the user's row and memberships (disabled, role),
 * guarded by the user slot.  A membership entry depends on its user's slot,
 * the epoch and the tenant slot.
 *
 * Writers.  AFTER ROW triggers (src/sql/65_cache.sql), for every change
 * that can affect validation, call authctx_cache_invalidate(), which
 * appends the affected slots to a backend-local pending list, tagged with
 * the subtransaction nesting level:
 *	- sessions and api_keys (revocation, expiry, verifier, user, tenant,
 *	  scopes, id; deletion): the token slot of the old row's id and, for an
 *	  UPDATE, of the new row's id.  A change to one session's row can only
 *	  alter the entry keyed by that session's id, so revoking one session
 *	  leaves the user's other cached sessions valid;
 *	- users (disable, deletion) and memberships (insert, delete, role
 *	  change): the user slot of the old and new row's user;
 *	- tenants (slug and id changes, deletion): the database's tenant slot.
 * TRUNCATE (statement trigger) and CREATE EXTENSION (through _cache_flush)
 * pend the database's epoch slot.  Then:
 *	- subtransaction abort drops what that subtransaction pended; its
 *	  commit hands it to the parent;
 *	- XACT_EVENT_PRE_COMMIT (before the commit becomes visible) increments
 *	  busy on each pending slot;
 *	- XACT_EVENT_COMMIT (after ProcArrayEndTransaction made the commit
 *	  visible, and before the client is told) takes v = ++clock, raises
 *	  gen to at least v on each pending slot (compare-and-swap, gen never
 *	  goes back), and only then decrements busy;
 *	- XACT_EVENT_ABORT after PRE_COMMIT decrements busy without bumping.
 *	  An aborted transaction leaves no trace;
 *	- PREPARE TRANSACTION of a transaction with pending slots is refused,
 *	  with or without a cache on this server: COMMIT PREPARED runs in
 *	  another backend, where no callback would bump, possibly after a
 *	  restart with preloading or on a promoted standby.  So the triggers
 *	  pend in every mode.
 * Bulk changes.  Revoking all of a user's sessions (set_password,
 * revoke_user_sessions, logout of a login family, cleanup's deletions)
 * pends one token slot per row.  Once a transaction's list holds
 * CACHE_PENDING_MAX / 2 slots, a session or API key row pends its user's
 * slot (its user_id column, old and new row) instead of its token's.  The
 * user slot invalidates the entry just as well: an entry is filled from a
 * committed version of the row, which is the old row of the first change
 * to it in the transaction, and the entry depends on that row's user.  The
 * rows of one user then share one deduplicated list item, so a bulk
 * revocation does not run into the epoch (at the price of the user's other
 * cached sessions and memberships missing once).  As a last resort, a
 * transaction that pends more than CACHE_PENDING_MAX distinct slots pends
 * its database's epoch instead.  Deleting a revoked row, or one
 * expired for more than a few minutes, pends nothing: such a row is never
 * a valid entry (expiry is checked by the wall clock on every hit), so
 * cleanup() does not flush the cache.  DROP EXTENSION leaves entries
 * behind; nothing can reach them without the extension's functions, and the
 * next CREATE EXTENSION in that database flushes them.
 *
 * Readers.  A fill reads stamp = clock BEFORE taking the snapshot of its
 * table lookup, and stores it in the entry.  A hit copies the entry under
 * the shared partition lock and uses it only if, for every slot it depends
 * on (token, user and epoch for sessions and API keys; user, epoch and
 * tenant for memberships), busy == 0 and then gen <= stamp.
 *
 * Why this is enough.  Take a change C that committed, and a later
 * auth_begin R that finds an entry C makes stale.  By "Writers" and "Bulk
 * changes", C pended at least one slot that entry depends on; the argument
 * below is about that one slot, and holds whichever kind it is (token,
 * user, tenant or epoch): per-token slots need no argument of their own.
 *	(a) If R starts after the client learned of C's commit, C's COMMIT
 *		callback is complete: gen >= v on C's slots, busy back to what it
 *		was.  An entry with stamp >= v read the clock after the ++clock, so
 *		after C became visible: its snapshot saw C.  An entry with stamp < v
 *		is refused.
 *	(b) If R merely observes C (its own snapshot saw C) while C's backend
 *		has not yet run its COMMIT callback, busy > 0 on C's slots, since
 *		PRE_COMMIT precedes visibility: R bypasses the cache and reads the
 *		tables, with a snapshot that sees C.
 *	(c) The refill race: a filler whose snapshot predates C and who inserts
 *		after C's bump carries a stamp read before its snapshot, hence
 *		before C's ++clock: stamp < v, and the entry is dead on arrival.
 *		Two fillers may overwrite each other in any order; each entry is
 *		judged by its own stamp.
 * A transaction's own uncommitted changes are seen by its table lookups
 * but not by the cache, so a transaction that has written anything (it
 * has an xid) neither reads nor fills the cache.  A hot standby uses it
 * too: see "Standbys" below.
 * Replicated writes (logical replication apply, session_replication_role
 * = replica) do fire the triggers: they are ENABLE ALWAYS.  A superuser
 * who disables them (ALTER TABLE ... DISABLE TRIGGER ALL) must restart or
 * call authctx._cache_flush().
 *
 * Standbys
 * --------
 * WAL replay runs no trigger and no transaction callback.  The second
 * channel is PostgreSQL's own: invalidation messages ride in the commit
 * record, and a standby replays them to every backend (cache_standby.c).
 *	- Slots travel as wide keys: the hashes above keep CACHE_WIDE_BITS bits,
 *	  and each server takes the low bits it has slots for, so a primary and
 *	  a standby with different cache sizes agree on what a key means.
 *	- Sending.  At PRE_COMMIT a transaction with pending slots registers,
 *	  for each, a relcache invalidation of the synthetic relation id
 *	  CACHE_RELID_BASE + key, for database InvalidOid (a fabricated
 *	  pg_class tuple with relisshared): every backend of every database
 *	  reads it, and so does the listener, connected to none.  PRE_COMMIT
 *	  precedes RecordTransactionCommit, which writes the transaction's
 *	  messages (xactGetCommittedInvalidationMessages, current command's
 *	  included) into the commit record; the row changes that pended the
 *	  slots gave the transaction an xid, so there is one.  This happens
 *	  whether or not this server has a cache (a primary without preloading
 *	  still feeds a preloaded standby), but not at wal_level minimal, which
 *	  feeds none.  At most CACHE_SEND_MAX messages: a transaction that
 *	  pended more (a bulk revocation) sends its database's epoch slot
 *	  alone, since every backend of every database, on the primary too,
 *	  reads each message, and a flood would push slow readers into queue
 *	  resets (a full catalog cache rebuild).  With wal_level = logical,
 *	  logical decoding treats a transaction with messages as one that
 *	  changed the catalog (a new historic snapshot): a cost, not an error.
 *	  RegisterRelcacheInvalidation flags the relcache init file only for
 *	  catalog relations (RelationIdIsInRelationInitFile), which these ids
 *	  are not.  A real relation whose oid falls in the range (the oid
 *	  counter must wrap that far) costs a spurious relcache rebuild on one
 *	  side and a spurious miss on the other.  PREPARE of a transaction with
 *	  pending slots is refused on every server (see Writers): COMMIT
 *	  PREPARED may run where a cache exists and nothing would bump.
 *	- Replay.  xact_redo_commit marks the commit in pg_xact and removes its
 *	  xids from the known-assigned ones (new snapshots see it), then
 *	  ProcessCommittedInvalidationMessages queues the messages; only after
 *	  the redo function returns does the record count as replayed
 *	  (pg_last_wal_replay_lsn).  During recovery a backend calls
 *	  AcceptInvalidationMessages before every cache lookup (after a full
 *	  barrier: its first test, "anything queued?", is unlocked), and the
 *	  relcache callback bumps each synthetic slot: v = ++clock, gen >= v,
 *	  with no busy phase.  A backend that fell too far behind the queue
 *	  gets a reset instead (relid InvalidOid), which bumps the "all" slot
 *	  (gen[nslots], on which every entry depends).  Outside recovery the
 *	  callback does nothing: the transaction callbacks already bumped.
 *	- Newborn backends.  A backend joins the queue at its end: a message
 *	  queued before that, which no live backend has read yet, it would
 *	  never see.  The listener worker reads the queue in numbered rounds
 *	  (round_started += 1, then AcceptInvalidationMessages, then
 *	  round_done = that round).  During recovery a backend reads the cache
 *	  only once a round that began after its first attempt has completed:
 *	  that round began after the backend joined, so it read (and bumped)
 *	  every message queued since the listener itself joined the queue; and
 *	  a listener, when it starts (at standby start, or after its
 *	  predecessor died), bumps the "all" slot before it completes a round,
 *	  which covers every message queued before it joined, whether or not
 *	  anyone ever reads it.  Until then the backend reads
 *	  the tables (it may fill: fills are judged by their stamps) and pokes
 *	  the listener; with no listener it never reads the cache.
 * Why this is enough on a standby.  Take C, committed on the primary and
 * replayed here, and a later auth_begin R on the standby.  At R's lookup
 * C's slots were bumped after C became visible: by R itself (it read the
 * message, or a reset), or by the listener in a round R waited for.  An
 * entry with stamp >= v read the clock after that bump, hence after C was
 * visible, and its snapshot, taken later, saw C; an entry with stamp < v
 * is refused.  The refill race is (c) again: a filler whose snapshot
 * predates C's visibility read its stamp earlier still, before the bump
 * (which follows visibility), so its entry is dead on arrival.  What a
 * standby does not give is (b): between C's visibility and the queueing
 * of its messages (inside one redo call) a backend may see C in a
 * snapshot yet hit an entry C makes stale; C does not count as replayed
 * until that call returns.
 * Promotion.  Outside recovery the callback ignores synthetic ids, but
 * entries filled during recovery may depend on replayed messages nobody
 * read.  So recovery_pending (set when shared memory is created) makes the
 * first reader outside recovery bump the "all" slot before anyone reads the
 * cache: every entry filled before is refused, and one filled after read
 * its stamp after recovery had ended, so its snapshot sees every replayed
 * commit.  A primary pays this once, on an empty cache, at its start.
 * Last-seen: a standby cannot move an entry's last-seen time, and the
 * primary's writes of it invalidate nothing; a hit that looks idle-expired
 * on a standby is read again from the tables (cache.c).
 *
 * A hit costs one shared partition LWLock, a hash of the 24-byte key and
 * of each slot it depends on, a copy of the entry and two atomic reads per
 * slot (busy, gen) plus the "all" slot's gen: no SPI, no catalog access,
 * and no write but the usage bit (on a standby, also an unlocked look at
 * the invalidation queue).  Expiry and the idle timeout are still judged on every call, by the
 * wall clock (SessionIsLive in session.c, which also decides what may be
 * cached).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "authctx.h"
#include "cache_internal.h"

PG_FUNCTION_INFO_V1(authctx_cache_invalidate);
PG_FUNCTION_INFO_V1(authctx_cache_flush);

/* A slot pended by this backend's transaction, and at which nest level. */
typedef struct CachePending
{
	uint32		slot;			/* wide key */
	int			level;
} CachePending;

static void CacheSendPending(void);

/* This backend's transaction. */
static CachePending *cache_pending = NULL;
static int	cache_npending = 0;
static bool cache_busy_held = false;
static bool cache_callbacks = false;

/* A transaction pending more distinct slots than this flushes the database. */
#define CACHE_PENDING_MAX	1024

/*
 * A transaction pending more distinct slots than this sends standbys one
 * message for its database's epoch slot instead of one per slot: every
 * backend of every database reads each message, and the shared queue
 * holds 4096.
 */
#define CACHE_SEND_MAX		32

/* ---------------------------------------------------------------------
 * Generation slots
 * ---------------------------------------------------------------------
 */

/* The slot (wide key) of a user in this database. */
uint32
CacheUserSlot(const pg_uuid_t *user_id)
{
	unsigned char buf[sizeof(Oid) + UUID_LEN];

	memcpy(buf, &MyDatabaseId, sizeof(Oid));
	memcpy(buf + sizeof(Oid), user_id->data, UUID_LEN);
	return hash_bytes(buf, sizeof(buf)) & CACHE_WIDE_MASK;
}

/*
 * The slot of a session (kind TOKEN_SESSION) or API key (TOKEN_API_KEY) in
 * this database, by its token id.
 */
uint32
CacheTokenSlot(char kind, const pg_uuid_t *id)
{
	unsigned char buf[sizeof(Oid) + 1 + UUID_LEN];

	memcpy(buf, &MyDatabaseId, sizeof(Oid));
	buf[sizeof(Oid)] = (unsigned char) kind;
	memcpy(buf + sizeof(Oid) + 1, id->data, UUID_LEN);
	return hash_bytes(buf, sizeof(buf)) & CACHE_WIDE_MASK;
}

/* This database's epoch or tenant slot. */
uint32
CacheDbSlot(uint32 salt)
{
	return hash_bytes_uint32((uint32) MyDatabaseId ^ salt) & CACHE_WIDE_MASK;
}

/*
 * Is an entry filled at stamp still good, given the slots (wide keys) it
 * depends on?  busy first, then (after a read barrier) gen, the "all" slot
 * included: see the essay above.
 */
bool
CacheStampValid(uint64 stamp, const uint32 *slots, int n)
{
	pg_memory_barrier();
	for (int i = 0; i < n; i++)
		if (pg_atomic_read_u32(&authctx_cache_busy[CacheLocalSlot(slots[i])]) != 0)
			return false;
	pg_read_barrier();
	if (pg_atomic_read_u64(&authctx_cache_gen[authctx_cache_nslots]) > stamp)
		return false;
	for (int i = 0; i < n; i++)
		if (pg_atomic_read_u64(&authctx_cache_gen[CacheLocalSlot(slots[i])]) > stamp)
			return false;
	return true;
}

/* Raise a slot's gen to at least v (compare-and-swap: gen never goes back). */
static void
CacheRaise(uint32 local, uint64 v)
{
	pg_atomic_uint64 *gen = &authctx_cache_gen[local];
	uint64		cur = pg_atomic_read_u64(gen);

	while (cur < v && !pg_atomic_compare_exchange_u64(gen, &cur, v))
		;
}

/*
 * Make every entry that depends on a slot (a local index; nslots is the
 * "all" slot) stale now, for an invalidation that arrived without busy
 * (cache_standby.c).
 */
void
CacheBumpSlot(uint32 local)
{
	CacheRaise(local, pg_atomic_add_fetch_u64(authctx_cache_clock, 1));
}

/*
 * May this backend fill the cache now?  Not without shared memory, and not
 * in a transaction that has written anything: its own uncommitted changes
 * must be neither cached nor hidden by the cache.  (Whether it may also
 * read it is CacheReadable(), which adds the standby's conditions.)
 */
bool
CacheUsable(void)
{
	return authctx_cache_clock != NULL &&
		!TransactionIdIsValid(GetTopTransactionIdIfAny());
}

/*
 * The stamp for a fill: read it BEFORE the snapshot of the table lookup.
 * 0 means "do not fill".
 */
uint64
CacheStamp(void)
{
	uint64		stamp;

	if (!CacheUsable())
		return 0;
	stamp = pg_atomic_read_u64(authctx_cache_clock);
	pg_memory_barrier();
	return stamp;
}

/* ---------------------------------------------------------------------
 * Invalidation: pending slots and the transaction callbacks
 * ---------------------------------------------------------------------
 */

/* Drop the pending list, releasing busy counts if PRE_COMMIT took them. */
static void
CachePendingReset(bool bump)
{
	if (cache_busy_held)
	{
		if (bump)
		{
			uint64		v = pg_atomic_add_fetch_u64(authctx_cache_clock, 1);

			for (int i = 0; i < cache_npending; i++)
				CacheRaise(CacheLocalSlot(cache_pending[i].slot), v);
		}
		for (int i = 0; i < cache_npending; i++)
			pg_atomic_fetch_sub_u32(&authctx_cache_busy[CacheLocalSlot(cache_pending[i].slot)], 1);
		cache_busy_held = false;
	}
	cache_npending = 0;
}

/* Transaction end: see the essay at the top of this file. */
static void
CacheXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (cache_npending > 0 && !cache_busy_held)
			{
				CacheSendPending();
				if (authctx_cache_clock != NULL)
				{
					for (int i = 0; i < cache_npending; i++)
						pg_atomic_fetch_add_u32(&authctx_cache_busy[CacheLocalSlot(cache_pending[i].slot)], 1);
					cache_busy_held = true;
				}
			}
			if (authctx_cache_clock == NULL)
				cache_npending = 0;
			break;
		case XACT_EVENT_COMMIT:
			CachePendingReset(true);
			break;
		case XACT_EVENT_ABORT:
			CachePendingReset(false);
			break;
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * Refused with or without a cache here: COMMIT PREPARED may run
			 * on a server that has one (restarted with preloading, or a
			 * promoted standby), where no callback would bump.
			 */
			if (cache_npending > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed authctx sessions, users or memberships"),
						 errdetail("The authctx session cache is invalidated when such a transaction commits, which COMMIT PREPARED cannot do."),
						 errhint("Commit the change without two-phase commit.")));
			break;
		case XACT_EVENT_PREPARE:
			CachePendingReset(false);
			break;
		default:
			break;
	}
}

/*
 * Send the pending slots to hot standbys, in the commit record (see
 * "Standbys" above); not when wal_level is minimal (no standby can exist).
 */
static void
CacheSendPending(void)
{
	uint32		wide[CACHE_SEND_MAX];

	if (!XLogStandbyInfoActive())
		return;
	if (cache_npending > CACHE_SEND_MAX)
	{
		/* a bulk change: one message for the database, not one per slot */
		wide[0] = CacheDbSlot(CACHE_SALT_EPOCH);
		CacheSendSlots(wide, 1);
		return;
	}
	for (int i = 0; i < cache_npending; i++)
		wide[i] = cache_pending[i].slot;
	CacheSendSlots(wide, cache_npending);
}

/* Subtransaction end: abort drops its slots, commit gives them to the parent. */
static void
CacheSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			keep = 0;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	for (int i = 0; i < cache_npending; i++)
	{
		if (cache_pending[i].level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
				continue;
			cache_pending[i].level = level - 1;
		}
		cache_pending[keep++] = cache_pending[i];
	}
	cache_npending = keep;
}

/* Backend exit: never leave a busy count behind. */
static void
CacheShmemExit(int code, Datum arg)
{
	CachePendingReset(false);
}

/* Pend a slot for this transaction (deduplicated; too many: the epoch). */
static void
CacheNoteSlot(uint32 slot)
{
	uint32		epoch = CacheDbSlot(CACHE_SALT_EPOCH);

	if (!cache_callbacks)
	{
		cache_pending = MemoryContextAlloc(TopMemoryContext,
										   CACHE_PENDING_MAX * sizeof(CachePending));
		RegisterXactCallback(CacheXactCallback, NULL);
		RegisterSubXactCallback(CacheSubXactCallback, NULL);
		before_shmem_exit(CacheShmemExit, (Datum) 0);
		cache_callbacks = true;
	}
	if (cache_busy_held)
		elog(ERROR, "authctx cache invalidation after pre-commit");

	for (int i = 0; i < cache_npending; i++)
		if (cache_pending[i].slot == slot || cache_pending[i].slot == epoch)
			return;
	if (cache_npending >= CACHE_PENDING_MAX - 1)
		slot = epoch;
	cache_pending[cache_npending].slot = slot;
	cache_pending[cache_npending].level = GetCurrentTransactionNestLevel();
	cache_npending++;
}

/* A tuple's uuid column; NULL if the value is null. */
static pg_uuid_t *
CacheTupleUuid(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			attnum = SPI_fnumber(desc, column);
	bool		isnull;
	Datum		d;

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist", column)));
	d = heap_getattr(tuple, attnum, desc, &isnull);
	return isnull ? NULL : DatumGetUUIDP(d);
}

/* Pend the user slot of a tuple's user id column, if not null. */
static void
CacheNoteTupleUser(HeapTuple tuple, TupleDesc desc, const char *column)
{
	pg_uuid_t  *user_id = CacheTupleUuid(tuple, desc, column);

	if (user_id != NULL)
		CacheNoteSlot(CacheUserSlot(user_id));
}

/*
 * Pend the token slot of a sessions or api_keys tuple (column id), or, once
 * the pending list is half full, its user's slot (column user_id): see
 * "Bulk changes" above.  Both columns are NOT NULL; should one be null
 * anyway, the other is used, and with neither the epoch.
 */
static void
CacheNoteTupleToken(HeapTuple tuple, TupleDesc desc, char kind)
{
	pg_uuid_t  *id = CacheTupleUuid(tuple, desc, "id");
	pg_uuid_t  *user_id;

	if (id != NULL && cache_npending < CACHE_PENDING_MAX / 2)
	{
		CacheNoteSlot(CacheTokenSlot(kind, id));
		return;
	}
	user_id = CacheTupleUuid(tuple, desc, "user_id");
	if (user_id != NULL)
		CacheNoteSlot(CacheUserSlot(user_id));
	else if (id != NULL)
		CacheNoteSlot(CacheTokenSlot(kind, id));
	else
		CacheNoteSlot(CacheDbSlot(CACHE_SALT_EPOCH));
}

/*
 * Trigger: authctx._cache_invalidate(what [, column | kind]).
 *	'user', column: the users named by column in the old and new row;
 *	'token', kind: the session ('s') or API key ('k') of the old and new
 *	row, by column id (or by user_id in a bulk change);
 *	'tenant': this database's tenant names; 'all': the whole database.
 */
Datum
authctx_cache_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authctx._cache_invalidate() must be called as a trigger")));
	trigger = trigdata->tg_trigger;
	if (trigger->tgnargs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authctx._cache_invalidate() needs an argument")));
	if (strcmp(trigger->tgargs[0], "all") == 0)
		CacheNoteSlot(CacheDbSlot(CACHE_SALT_EPOCH));
	else if (strcmp(trigger->tgargs[0], "tenant") == 0)
		CacheNoteSlot(CacheDbSlot(CACHE_SALT_TENANT));
	else if (strcmp(trigger->tgargs[0], "user") == 0 && trigger->tgnargs == 2 &&
			 TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);

		CacheNoteTupleUser(trigdata->tg_trigtuple, desc, trigger->tgargs[1]);
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			CacheNoteTupleUser(trigdata->tg_newtuple, desc, trigger->tgargs[1]);
	}
	else if (strcmp(trigger->tgargs[0], "token") == 0 && trigger->tgnargs == 2 &&
			 TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
			 strlen(trigger->tgargs[1]) == 1 &&
			 (trigger->tgargs[1][0] == TOKEN_SESSION ||
			  trigger->tgargs[1][0] == TOKEN_API_KEY))
	{
		TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
		char		kind = trigger->tgargs[1][0];

		CacheNoteTupleToken(trigdata->tg_trigtuple, desc, kind);
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			CacheNoteTupleToken(trigdata->tg_newtuple, desc, kind);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("invalid arguments for authctx._cache_invalidate()")));
	return PointerGetDatum(NULL);
}

/*
 * authctx._cache_flush(): when this transaction commits, drop every entry
 * of this database.  CREATE EXTENSION calls it, so that nothing cached from
 * an earlier installation of the same database survives.
 */
Datum
authctx_cache_flush(PG_FUNCTION_ARGS)
{
	CacheNoteSlot(CacheDbSlot(CACHE_SALT_EPOCH));
	PG_RETURN_VOID();
}
