/*-------------------------------------------------------------------------
 *
 * seen.c
 *		Last-seen times of sessions and API keys, written off the request
 *		path by background workers.
 *
 * auth_begin must not write: it runs in READ ONLY transactions and on
 * standbys, and a write per request would serialise every request of a
 * session on one row.  auth_begin tells us (WorkerNoteSeen) which session
 * or API key it accepted, only when the recorded time is at least
 * SessionSeenInterval() old (a tenth of authctx.session_idle_timeout for a
 * session; authctx.last_seen_interval for an API key, or a session with
 * the idle timeout off), so at most once per that interval and session
 * (cache.c moves the cached time under a compare-and-swap, so only one
 * backend notes each move).  A backend's own notes that are still waiting
 * here count for its own table lookups (WorkerSeenPending).
 *
 * - Preloaded: the note goes into a ring in shared memory (SEEN_QUEUE notes
 *   of 32 bytes, 4 MB, one LWLock).  A static worker, connected to no
 *   database, writes each full batch (SEEN_SHARED_BATCH) as soon as it is
 *   there, and empties the ring every tenth of last_seen_interval (at least
 *   once a second), sorting each batch by database and handing each
 *   database's share to a "seen" task (worker.c) connected there, one at a
 *   time, waiting for each.  No backend holds notes back, idle or not, and
 *   every database is served.
 * - Not preloaded, or the ring is full: a small backend-local list
 *   (deduplicated by id, newest time kept), handed at most every
 *   last_seen_interval to a task that we do not wait for, and at backend
 *   exit; an idle backend keeps its notes until its next request.
 *
 * A "seen" task runs authctx._autonomous_apply('seen', ...) like every
 * other task, with the identity and pinned settings described in worker.c;
 * it dispatches to the session module's authctx._note_seen
 * (src/sql/50_session.sql), which owns the write.
 * The SQL only moves times forward, so late or repeated batches are
 * harmless, and it never waits for a row lock (a row held by a revocation,
 * cleanup or another batch keeps its old time), so a batch cannot deadlock
 * with anything.  A batch that fails (its database dropped the extension,
 * or no worker slot became free) is logged and dropped; notes still queued
 * at server shutdown are lost.  Last-seen times are hints, approximate by
 * design, which is why a batch that cannot be written is dropped rather
 * than refused: nothing depends on it.  On a standby nothing is recorded.
 *
 * Shared state: the ring (SeenShared), every field under its LWLock.  The
 * `latch` field is the static worker's, NULL while it is not running; a
 * backend whose note makes the ring hold a multiple of SEEN_SHARED_BATCH
 * sets it after releasing the lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "authctx.h"

/* last-seen notes: a batch, and the shared queue (preloaded) */
#define SEEN_BATCH				4096	/* backend-local list */
#define SEEN_SHARED_BATCH		8192	/* a batch of the shared queue */
#define SEEN_QUEUE				131072	/* places in the shared queue */
#define SEEN_TRANCHE			"authctx_seen"

static int	authctx_debug_seen_queue_limit = 0;

/* One pending last-seen note: 32 bytes. */
typedef struct SeenNote
{
	Oid			dbid;			/* database of the session */
	char		kind;			/* TOKEN_SESSION or TOKEN_API_KEY */
	pg_uuid_t	id;
	TimestampTz when;
} SeenNote;

/* Without the shared queue: this backend's notes, deduplicated by id. */
static SeenNote seen_pending[SEEN_BATCH];
static int	seen_count = 0;

/* (kind, id) -> index in seen_pending, so that noting is O(1). */
typedef struct SeenKey
{
	char		kind;
	pg_uuid_t	id;
} SeenKey;

typedef struct SeenHashEntry
{
	SeenKey		key;
	int			index;
} SeenHashEntry;

static HTAB *seen_hash = NULL;
static TimestampTz seen_last_flush = 0;
static bool seen_exit_registered = false;

PGDLLEXPORT void authctx_seen_main(Datum main_arg);

PG_FUNCTION_INFO_V1(authctx_seen_stats);

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void SeenShmemRequest(void);
static void SeenShmemStartup(void);

/*
 * Define the testing-only queue limit; when preloaded, register the static
 * last-seen worker and ask for the queue's shared memory.
 */
void
SeenInit(void)
{
	DefineCustomIntVariable("authctx.debug_seen_queue_limit",
							"Testing only: places of the shared last-seen queue this backend may fill; 0 means all.",
							NULL,
							&authctx_debug_seen_queue_limit,
							0, 0, SEEN_QUEUE,
							PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* connected to no database (like the logical replication launcher) */
	WorkerRegisterStatic("authctx_seen_main", "authctx last-seen");

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = SeenShmemRequest;
#else
	SeenShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = SeenShmemStartup;
}

/* The payload of a "seen" task for notes[0 .. n), all of one database. */
static char *
SeenPayload(const SeenNote *notes, int n)
{
	StringInfoData buf;

	/*
	 * {"entries":[{"k":"s","id":"<uuid>","t":<microseconds since the Unix
	 * epoch>},...]}: plain numbers, independent of DateStyle and TimeZone.
	 */
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"entries\":[");
	for (int i = 0; i < n; i++)
	{
		char		idtext[AUTHCTX_UUID_TEXT_LEN + 1];
		int64		unix_us = notes[i].when +
			((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfo(&buf, "{\"k\":\"%c\",\"id\":\"%s\",\"t\":" INT64_FORMAT "}",
						 notes[i].kind == TOKEN_API_KEY ? 'k' : 's',
						 ContextUuidText(&notes[i].id, idtext), unix_us);
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/*
 * Hand notes[0 .. n) of one database to a "seen" task (worker.c).  Without
 * `wait`, true once its worker is registered; with it, true once it has
 * committed.
 */
static bool
SeenSend(Oid database, const SeenNote *notes, int n, bool wait)
{
	char	   *payload = SeenPayload(notes, n);
	WorkerTaskStatus status;

	status = WorkerTaskRun(database, "seen", payload, wait, NULL);
	pfree(payload);
	return status == WORKER_TASK_DONE;
}

/* -- preloaded: one queue in shared memory, one static worker -- */

/*
 * The queue is a ring of SEEN_QUEUE notes guarded by one LWLock: a backend
 * appends under it (a 32-byte copy), the worker takes up to
 * SEEN_SHARED_BATCH at a time.  `latch` is the worker's, NULL while it is
 * not running; a backend whose note makes the queue hold a multiple of
 * SEEN_SHARED_BATCH sets it.
 */
typedef struct SeenShared
{
	LWLock	   *lock;
	Latch	   *latch;			/* the worker's, or NULL */
	uint64		head;			/* next note to take */
	uint64		tail;			/* next free place */
	uint64		queued;			/* notes ever appended */
	uint64		overflowed;		/* notes refused because the ring was full */
	uint64		batches;		/* batches committed */
	uint64		written;		/* notes in committed batches */
	uint64		failed;			/* notes in batches that did not commit */
	SeenNote	notes[SEEN_QUEUE];
} SeenShared;

static SeenShared *seen_shared = NULL;

static void
SeenShmemRequest(void)
{
#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(SeenShared)));
	RequestNamedLWLockTranche(SEEN_TRANCHE, 1);
}

static void
SeenShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	seen_shared = ShmemInitStruct("authctx last-seen queue", sizeof(SeenShared), &found);
	if (!found)
	{
		memset(seen_shared, 0, offsetof(SeenShared, notes));
		seen_shared->lock = &(GetNamedLWLockTranche(SEEN_TRANCHE))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Append a note to the shared queue; false when there is none or it is full. */
static bool
SeenQueuePush(char kind, const pg_uuid_t *id, TimestampTz when)
{
	SeenNote   *note;
	uint64		held;
	Latch	   *latch;

	if (seen_shared == NULL)
		return false;

	LWLockAcquire(seen_shared->lock, LW_EXCLUSIVE);
	if (seen_shared->tail - seen_shared->head >=
		(authctx_debug_seen_queue_limit > 0 ? authctx_debug_seen_queue_limit : SEEN_QUEUE))
	{
		seen_shared->overflowed++;
		LWLockRelease(seen_shared->lock);
		return false;
	}
	note = &seen_shared->notes[seen_shared->tail % SEEN_QUEUE];
	note->dbid = MyDatabaseId;
	note->kind = kind;
	memcpy(note->id.data, id->data, UUID_LEN);
	note->when = when;
	seen_shared->tail++;
	seen_shared->queued++;
	held = seen_shared->tail - seen_shared->head;
	latch = seen_shared->latch;
	LWLockRelease(seen_shared->lock);

	if (latch != NULL && held % SEEN_SHARED_BATCH == 0)
		SetLatch(latch);
	return true;
}

/* Order notes by database. */
static int
SeenNoteCmp(const void *a, const void *b)
{
	Oid			da = ((const SeenNote *) a)->dbid;
	Oid			db = ((const SeenNote *) b)->dbid;

	return (da > db) - (da < db);
}

/*
 * Write what waits in the queue, SEEN_SHARED_BATCH notes at a time: only
 * full batches, or, with `all`, everything.  Each database's share of a
 * batch is written by a "seen" worker connected to it, one at a time.
 * Starting a worker costs tens of milliseconds, so batches are kept large:
 * a partial batch waits for the next tick.  A batch that does not commit
 * (the database was dropped, or no worker slot became free in time) is
 * logged and dropped: the notes are hints, and the cache entry keeps the
 * newer time until the next note.
 */
static void
SeenDrain(bool all)
{
	static SeenNote batch[SEEN_SHARED_BATCH];
	uint64		stop;

	/* with `all`, what is there now, not what arrives while we write */
	LWLockAcquire(seen_shared->lock, LW_SHARED);
	stop = seen_shared->tail;
	LWLockRelease(seen_shared->lock);

	for (;;)
	{
		int			n = 0;

		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(seen_shared->lock, LW_EXCLUSIVE);
		if (seen_shared->tail - seen_shared->head >= SEEN_SHARED_BATCH ||
			(all && seen_shared->head < stop))
		{
			while (n < SEEN_SHARED_BATCH && seen_shared->head < seen_shared->tail)
				batch[n++] = seen_shared->notes[seen_shared->head++ % SEEN_QUEUE];
		}
		LWLockRelease(seen_shared->lock);
		if (n == 0)
			return;

		qsort(batch, n, sizeof(SeenNote), SeenNoteCmp);
		for (int i = 0; i < n;)
		{
			int			j = i;
			bool		ok;

			while (j < n && batch[j].dbid == batch[i].dbid)
				j++;
			ok = SeenSend(batch[i].dbid, batch + i, j - i, true);
			if (!ok)
				ereport(LOG,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("authctx could not write %d last-seen times in database %u", j - i,
								batch[i].dbid),
						 errhint("Check max_worker_processes, and the server log for the worker's error.")));
			LWLockAcquire(seen_shared->lock, LW_EXCLUSIVE);
			if (ok)
			{
				seen_shared->batches++;
				seen_shared->written += j - i;
			}
			else
				seen_shared->failed += j - i;
			LWLockRelease(seen_shared->lock);
			i = j;
		}
	}
}

/* The worker is gone: backends stop setting its latch. */
static void
SeenWorkerExit(int code, Datum arg)
{
	LWLockAcquire(seen_shared->lock, LW_EXCLUSIVE);
	seen_shared->latch = NULL;
	LWLockRelease(seen_shared->lock);
}

/*
 * Main of the static last-seen worker (preloaded only).  Connected to no
 * database: it writes every full batch as soon as a backend's note makes
 * the queue hold a multiple of SEEN_SHARED_BATCH, and empties the queue
 * every tenth of authctx.last_seen_interval (at least a second), through
 * one short-lived "seen" worker per database and batch.
 */
void
authctx_seen_main(Datum main_arg)
{
	MemoryContext loopcxt;
	TimestampTz last_tick;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (seen_shared == NULL)
		proc_exit(0);
	WorkerConnect(InvalidOid);
	before_shmem_exit(SeenWorkerExit, (Datum) 0);
	LWLockAcquire(seen_shared->lock, LW_EXCLUSIVE);
	seen_shared->latch = MyLatch;
	LWLockRelease(seen_shared->lock);
	loopcxt = AllocSetContextCreate(TopMemoryContext, "authctx last-seen",
									ALLOCSET_DEFAULT_SIZES);

	last_tick = GetCurrentTimestamp();

	for (;;)
	{
		/* the tick: a tenth of the interval, at least a second */
		long		tick = Max((long) authctx_last_seen_interval * 100L, 1000L);
		long		timeout;
		bool		all;

		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												  TimestampTzPlusMilliseconds(last_tick, tick));
		if (timeout > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		all = TimestampDifferenceExceeds(last_tick, GetCurrentTimestamp(), (int) tick);
		if (all)
			last_tick = GetCurrentTimestamp();
		MemoryContextSwitchTo(loopcxt);
		SeenDrain(all);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);
	}
}

/*
 * SQL: authctx._seen_stats(): the shared queue's counters, cluster-wide;
 * all zero when authctx is not preloaded.
 */
Datum
authctx_seen_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};
	uint64		c[6] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (seen_shared != NULL)
	{
		LWLockAcquire(seen_shared->lock, LW_SHARED);
		c[0] = seen_shared->queued;
		c[1] = seen_shared->tail - seen_shared->head;
		c[2] = seen_shared->batches;
		c[3] = seen_shared->written;
		c[4] = seen_shared->failed;
		c[5] = seen_shared->overflowed;
		LWLockRelease(seen_shared->lock);
	}
	for (int i = 0; i < 6; i++)
		values[i] = Int64GetDatum((int64) c[i]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* -- not preloaded (or the queue is full): a backend-local list -- */

/* The note index, created on first use in TopMemoryContext. */
static HTAB *
SeenHash(void)
{
	if (seen_hash == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(SeenKey);
		ctl.entrysize = sizeof(SeenHashEntry);
		ctl.hcxt = TopMemoryContext;
		seen_hash = hash_create("authctx last-seen notes", SEEN_BATCH, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return seen_hash;
}

/* Forget every pending note. */
static void
SeenReset(void)
{
	seen_count = 0;
	if (seen_hash != NULL)
	{
		hash_destroy(seen_hash);
		seen_hash = NULL;
	}
}

/*
 * Hand the local notes to a worker we do not wait for.  On failure the
 * notes stay pending for the next attempt.
 */
static void
SeenFlush(TimestampTz now)
{
	seen_last_flush = now;
	if (seen_count == 0 || RecoveryInProgress() || !IsUnderPostmaster ||
		!OidIsValid(MyDatabaseId))
		return;
	if (SeenSend(MyDatabaseId, seen_pending, seen_count, false))
		SeenReset();
}

/* At backend exit, hand over what is still pending (outside a transaction). */
static void
SeenAtExit(int code, Datum arg)
{
	if (seen_count == 0 || IsTransactionState() || code != 0)
		return;
	PG_TRY();
	{
		SeenFlush(GetCurrentTimestamp());
	}
	PG_CATCH();
	{
		/* too late to report anything useful; the notes are only hints */
		FlushErrorState();
	}
	PG_END_TRY();
}

/* Keep a note in the backend-local list. */
static void
SeenLocalNote(char kind, const pg_uuid_t *id, TimestampTz when)
{
	TimestampTz now;
	SeenKey		key;
	SeenHashEntry *he;

	memset(&key, 0, sizeof(key));
	key.kind = kind;
	memcpy(key.id.data, id->data, UUID_LEN);
	he = hash_search(SeenHash(), &key, HASH_FIND, NULL);
	if (he != NULL)
	{
		if (when > seen_pending[he->index].when)
			seen_pending[he->index].when = when;
	}
	else
	{
		if (seen_count == SEEN_BATCH)
			SeenFlush(GetCurrentTimestamp());
		if (seen_count < SEEN_BATCH)
		{
			SeenNote   *note = &seen_pending[seen_count];

			he = hash_search(SeenHash(), &key, HASH_ENTER, NULL);
			he->index = seen_count;
			note->dbid = MyDatabaseId;
			note->kind = kind;
			memcpy(note->id.data, id->data, UUID_LEN);
			note->when = when;
			seen_count++;
		}
		/* else: still full because no worker could start; drop this note */
	}

	if (!seen_exit_registered)
	{
		before_shmem_exit(SeenAtExit, (Datum) 0);
		seen_exit_registered = true;
	}

	now = GetCurrentTimestamp();
	if (seen_count == SEEN_BATCH ||
		TimestampDifferenceExceeds(seen_last_flush, now,
								   authctx_last_seen_interval * 1000))
		SeenFlush(now);
}

/*
 * The time of a use of this session or API key that this backend noted
 * and has not handed to a writer yet, or DT_NOBEGIN: so that a table
 * lookup in this backend sees its own uses at once (the idle rule needs
 * them; without preloading, notes wait here up to last_seen_interval).
 */
TimestampTz
WorkerSeenPending(char kind, const pg_uuid_t *id)
{
	SeenKey		key;
	SeenHashEntry *he;

	if (seen_hash == NULL || seen_count == 0)
		return DT_NOBEGIN;
	memset(&key, 0, sizeof(key));
	key.kind = kind;
	memcpy(key.id.data, id->data, UUID_LEN);
	he = hash_search(seen_hash, &key, HASH_FIND, NULL);
	return he != NULL ? seen_pending[he->index].when : DT_NOBEGIN;
}

/*
 * Note that a session ('s') or API key ('k') was used at `when`.  Called by
 * auth_begin; never writes in the caller's transaction, works in read-only
 * transactions, does nothing on a standby.
 */
void
WorkerNoteSeen(char kind, const pg_uuid_t *id, TimestampTz when)
{
	if ((kind != TOKEN_SESSION && kind != TOKEN_API_KEY) || id == NULL)
		return;
	if (RecoveryInProgress())
	{
		SeenReset();
		return;
	}
	if (!SeenQueuePush(kind, id, when))
		SeenLocalNote(kind, id, when);
}

