/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Background work: records that must outlive a failing transaction,
 *		last-seen times written off the request path, and periodic cleanup.
 *
 * Three kinds of background process live here.
 *
 * 1. Autonomous writes (WorkerRunAutonomous).  A failed login must still
 *    count toward the lockout and still write login_failed; a reused refresh
 *    token must still revoke its family and write refresh_reuse; admin_begin
 *    must leave admin_bypass behind.  The caller raises (or may later roll
 *    back), so these rows cannot be written in its transaction: PostgreSQL
 *    has no autonomous transactions.  Instead the caller puts the database
 *    oid, a kind and a JSON payload into a dynamic shared memory segment,
 *    registers a dynamic background worker (which needs no preloading),
 *    passing the segment's handle as bgw_main_arg, and waits for it to exit.
 *    The worker connects to the same database as the bootstrap superuser,
 *    runs
 *
 *		SELECT authctx._autonomous_apply($1::text, $2::jsonb)
 *
 *    in a transaction of its own, with lock_timeout = 10s, and after commit
 *    marks the task done in the segment.  The caller reads that mark after
 *    the worker has exited: no mark means the record was not written, and
 *    WorkerRunAutonomous returns false (the SQL wrapper then emits a WARNING
 *    that names the kind, never the payload).  The payload goes through
 *    shared memory and SPI parameters, never through a command line or an
 *    activity string, so it does not appear in pg_stat_activity or the log.
 *
 *    The segment is pinned before the worker is registered and unpinned by
 *    the worker once it has attached, so a caller that is cancelled or
 *    terminated while waiting does not destroy the task under the worker:
 *    a client cannot dodge the lockout counter by cancelling its failed
 *    login.  If the worker never attached (it could not be forked), the
 *    caller unpins after seeing it stop.  Registration is retried for up to
 *    about a second when every max_worker_processes slot is taken.
 *
 *    DEADLOCK HAZARD.  The caller sleeps on its latch while the worker runs;
 *    a row lock held by the caller and needed by the worker is a wait cycle
 *    that the deadlock detector cannot see (one side waits on a latch, not a
 *    lock).  The SQL is therefore shaped so that the failing path has locked
 *    nothing by the time it calls the worker:
 *    - login reads users and login_throttle without locking and only ever
 *      writes them on success; on failure the worker does the increment.
 *    - refresh spends a token with UPDATE ... WHERE spent_at IS NULL AND
 *      revoked_at IS NULL.  Beware: when that UPDATE has to wait for a
 *      concurrent spender, it locks the newest row version before
 *      re-checking the WHERE clause, and keeps the lock when the re-check
 *      fails.  So the UPDATE runs in a subtransaction that is rolled back
 *      when it matched nothing, which releases that lock; the reuse path
 *      then re-reads the token with a plain SELECT and calls the worker
 *      holding nothing.  A token spent earlier in the caller's own
 *      transaction is recognised (its row version's xmin is still in
 *      progress) and refused without calling the worker at all.
 *    - audit events (admin_begin) touch only audit_log, whose inserts never
 *      conflict.
 *    What remains is a caller that locked other rows of the family earlier
 *    in the same transaction (say, logout of one of its sessions, then a
 *    reused refresh token inside one BEGIN block).  lock_timeout bounds that
 *    case: the worker gives up after ten seconds and the caller warns and
 *    raises as usual.
 *
 * 2. Last-seen times (WorkerNoteSeen).  auth_begin must not write: it runs
 *    in READ ONLY transactions and on standbys, and a write per request
 *    would serialise every request of a session on one row.  auth_begin
 *    tells us, at most once per authctx.last_seen_interval and session,
 *    which session or API key it accepted (cache.c moves the cached time
 *    under a compare-and-swap, so only one backend notes each move).
 *    - Preloaded: the note goes into a ring in shared memory (SEEN_QUEUE
 *      notes of 32 bytes, 4 MB, one LWLock).  A static worker, connected to
 *      no database, writes each full batch (SEEN_SHARED_BATCH) as soon as
 *      it is there, and empties the ring every tenth of last_seen_interval
 *      (at least once a second), sorting each batch by database and
 *      handing each database's share to a dynamic "seen" worker connected
 *      there, one at a time.  No backend holds
 *      notes back, idle or not, and every database is served.
 *    - Not preloaded, or the ring is full: a small backend-local list
 *      (deduplicated by id, newest time kept), handed at most every
 *      last_seen_interval to a dynamic worker that we do not wait for, and
 *      at backend exit; an idle backend keeps its notes until its next
 *      request.
 *    Batches travel in pinned DSM segments that the worker unpins.  The SQL
 *    only moves times forward, so late or repeated batches are harmless,
 *    and it never waits for a row lock (a row held by a revocation, cleanup
 *    or another batch keeps its old time), so a batch cannot deadlock with
 *    anything.  A batch that fails (its database dropped the extension) is
 *    logged and dropped; notes still queued at server shutdown are lost.
 *    Last-seen times are hints, approximate by design.  On a standby
 *    nothing is recorded.
 *
 * 3. Cleanup (preloaded only).  A static background worker connects to
 *    authctx.cleanup_database and runs authctx.cleanup() every
 *    authctx.cleanup_interval (0 disables it), quietly skipping a database
 *    where the extension is not installed.  cleanup() deletes in batches
 *    with SKIP LOCKED, so it never waits for or stalls a request.
 *
 * Shared state: the last-seen ring (SeenShared: every field under its
 * LWLock), and the DSM segments, each owned by exactly one caller/worker
 * pair, whose only cross-process synchronisation is the done flag, written
 * by the worker after commit and read by the caller after the worker has
 * exited (process exit orders the write before the read; a barrier
 * documents it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authctx.h"

/* authctx.cleanup_interval (seconds, 0 = off) and authctx.cleanup_database. */
static int	authctx_cleanup_interval = 600;
static char *authctx_cleanup_database = NULL;
static int	authctx_debug_seen_queue_limit = 0;

#define AUTONOMOUS_KIND_LEN		32
#define AUTONOMOUS_LOCK_TIMEOUT	"10s"
#define AUTONOMOUS_STMT_TIMEOUT	"60s"
/* registration retries when every worker slot is taken: 20 x 50 ms */
#define REGISTER_TRIES			20
#define REGISTER_RETRY_MS		50

/* last-seen notes: a batch, and the shared queue (preloaded) */
#define SEEN_BATCH				4096	/* backend-local list */
#define SEEN_SHARED_BATCH		8192	/* a batch of the shared queue */
#define SEEN_QUEUE				131072	/* places in the shared queue */
#define SEEN_TRANCHE			"authctx_seen"

/* Task states, written by the worker. */
#define TASK_PENDING	0
#define TASK_ATTACHED	1		/* worker attached; it unpins the segment */
#define TASK_DONE		2		/* committed */

/* The contents of one task's DSM segment. */
typedef struct AutonomousTask
{
	Oid			database;		/* database to connect to */
	pg_atomic_uint32 state;		/* TASK_* */
	char		kind[AUTONOMOUS_KIND_LEN];	/* _autonomous_apply's kind */
	char		payload[FLEXIBLE_ARRAY_MEMBER]; /* NUL-terminated JSON */
} AutonomousTask;

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

PGDLLEXPORT void authctx_autonomous_main(Datum main_arg);
PGDLLEXPORT void authctx_cleanup_main(Datum main_arg);
PGDLLEXPORT void authctx_seen_main(Datum main_arg);

PG_FUNCTION_INFO_V1(authctx_autonomous);
PG_FUNCTION_INFO_V1(authctx_seen_stats);

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void SeenShmemRequest(void);
static void SeenShmemStartup(void);

/* Kinds that _autonomous_apply understands; anything else is refused early. */
static bool
AutonomousKindValid(const char *kind)
{
	return strcmp(kind, "audit") == 0 ||
		strcmp(kind, "login_failed") == 0 ||
		strcmp(kind, "refresh_reuse") == 0 ||
		strcmp(kind, "webauthn_failed") == 0 ||
		strcmp(kind, "seen") == 0;
}

/*
 * Register a static worker, restarted 10 s after it exits.  Both ask for a
 * database connection: the cleanup worker to a database, the last-seen
 * worker to none, which still shows it in pg_stat_activity.
 */
static void
RegisterStaticWorker(const char *function, const char *name)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "authctx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/*
 * Define the worker settings; when preloaded, register the cleanup and
 * last-seen workers and ask for the last-seen queue's shared memory.
 */
void
WorkerInit(void)
{
	DefineCustomIntVariable("authctx.cleanup_interval",
							"Time between runs of authctx.cleanup() by the background worker.",
							"0 disables the worker's runs.  The worker exists only when authctx is in shared_preload_libraries.",
							&authctx_cleanup_interval,
							600, 0, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("authctx.cleanup_database",
							   "Database in which the background worker runs authctx.cleanup().",
							   "The worker skips it quietly when the extension is not installed there.",
							   &authctx_cleanup_database,
							   "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.debug_seen_queue_limit",
							"Testing only: places of the shared last-seen queue this backend may fill; 0 means all.",
							NULL,
							&authctx_debug_seen_queue_limit,
							0, 0, SEEN_QUEUE,
							PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	RegisterStaticWorker("authctx_cleanup_main", "authctx cleanup");
	/* connected to no database (like the logical replication launcher) */
	RegisterStaticWorker("authctx_seen_main", "authctx last-seen");

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = SeenShmemRequest;
#else
	SeenShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = SeenShmemStartup;
}

/*
 * Put a task into a new, pinned DSM segment; NULL when no segment can be had.
 * The pin keeps the segment alive until the worker has attached, whatever
 * happens to the caller meanwhile.
 */
static dsm_segment *
TaskCreate(Oid database, const char *kind, const char *payload)
{
	Size		len = strlen(payload);
	dsm_segment *seg;
	AutonomousTask *task;

	seg = dsm_create(offsetof(AutonomousTask, payload) + len + 1,
					 DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return NULL;
	task = (AutonomousTask *) dsm_segment_address(seg);
	task->database = database;
	pg_atomic_init_u32(&task->state, TASK_PENDING);
	strlcpy(task->kind, kind, sizeof(task->kind));
	memcpy(task->payload, payload, len + 1);
	dsm_pin_segment(seg);
	return seg;
}

/* Register the autonomous worker for a segment; false when no slot is free. */
static bool
TaskLaunch(dsm_segment *seg, bool wait, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	int			tries = wait ? REGISTER_TRIES : 1;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "authctx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "authctx_autonomous_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "authctx autonomous writer for PID %d",
			 MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "authctx autonomous");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = wait ? MyProcPid : 0;

	for (int i = 0; i < tries; i++)
	{
		if (RegisterDynamicBackgroundWorker(&worker, handle))
			return true;
		if (i + 1 < tries)
		{
			/*
			 * No CHECK_FOR_INTERRUPTS here: an error now would leave the
			 * segment pinned with no worker to unpin it.  The wait is short.
			 */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 REGISTER_RETRY_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	return false;
}

/*
 * Launch the worker for a task segment and wait for it to exit; true when
 * it committed.  Detaches from the segment in every case.
 */
static bool
TaskRun(dsm_segment *seg)
{
	AutonomousTask *task = (AutonomousTask *) dsm_segment_address(seg);
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	uint32		state;

	if (!TaskLaunch(seg, true, &handle))
	{
		dsm_unpin_segment(dsm_segment_handle(seg));
		dsm_detach(seg);
		return false;
	}

	/*
	 * Interruptible: a cancelled caller leaves, the pinned segment and the
	 * worker carry on without it.
	 */
	status = WaitForBackgroundWorkerShutdown(handle);
	pg_read_barrier();
	state = pg_atomic_read_u32(&task->state);

	/* a worker that never attached cannot unpin; do it for it */
	if (status == BGWH_STOPPED && state == TASK_PENDING)
		dsm_unpin_segment(dsm_segment_handle(seg));
	dsm_detach(seg);
	pfree(handle);

	return status == BGWH_STOPPED && state == TASK_DONE;
}

/*
 * Run _autonomous_apply(kind, payload) in a transaction of its own, in a
 * background worker, and wait for it.  True when the worker committed.
 * Never raises for a worker that could not run; the caller decides how
 * loudly to say so.
 */
bool
WorkerRunAutonomous(const char *kind, const char *payload_json)
{
	dsm_segment *seg;

	if (kind == NULL || payload_json == NULL || !AutonomousKindValid(kind))
		return false;
	/* a standby cannot write, and no worker could either */
	if (RecoveryInProgress() || !IsUnderPostmaster)
		return false;

	seg = TaskCreate(MyDatabaseId, kind, payload_json);
	if (seg == NULL)
		return false;
	return TaskRun(seg);
}

/*
 * SQL: authctx._autonomous(kind text, payload jsonb) RETURNS boolean.
 * Internal (revoked from PUBLIC).  Warns, naming only the kind, when the
 * record could not be written.
 */
Datum
authctx_autonomous(PG_FUNCTION_ARGS)
{
	char	   *kind;
	Jsonb	   *payload;
	char	   *json;
	bool		ok;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("kind and payload of an autonomous record must not be null")));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!AutonomousKindValid(kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown autonomous record kind \"%s\"", kind)));
	payload = PG_GETARG_JSONB_P(1);
	json = JsonbToCString(NULL, &payload->root, VARSIZE(payload));

	ok = WorkerRunAutonomous(kind, json);
	if (!ok)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("could not write the \"%s\" record in a transaction of its own", kind),
				 errdetail("The background worker that writes it could not run or did not commit."),
				 errhint("Check max_worker_processes, and the server log for the worker's error.")));
	pfree(json);
	PG_RETURN_BOOL(ok);
}

/*
 * Main of the autonomous worker: attach, connect, apply, commit, report.
 * Any error ends the process before the done mark is set, which the caller
 * reads as failure.
 */
void
authctx_autonomous_main(Datum main_arg)
{
	dsm_handle	handle = DatumGetUInt32(main_arg);
	dsm_segment *seg;
	AutonomousTask *task;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		activity[64 + AUTONOMOUS_KIND_LEN];
	int			ret;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(handle);
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map the authctx task's dynamic shared memory segment")));
	/*
	 * Our mapping now keeps the segment alive: drop the caller's pin.  Say so
	 * first, so that the caller never unpins it a second time.
	 */
	task = (AutonomousTask *) dsm_segment_address(seg);
	pg_atomic_write_u32(&task->state, TASK_ATTACHED);
	dsm_unpin_segment(handle);

	BackgroundWorkerInitializeConnectionByOid(task->database, InvalidOid, 0);

	/* never hang on a lock for ever (see DEADLOCK HAZARD above) */
	SetConfigOption("lock_timeout", AUTONOMOUS_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", AUTONOMOUS_STMT_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);

	snprintf(activity, sizeof(activity), "authctx autonomous write: %s", task->kind);
	values[0] = CStringGetTextDatum(task->kind);
	values[1] = CStringGetTextDatum(task->payload);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	ret = SPI_execute_with_args("SELECT authctx._autonomous_apply($1::text, $2::jsonb)",
								2, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("authctx autonomous write failed: SPI error %d", ret)));

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);

	pg_write_barrier();
	pg_atomic_write_u32(&task->state, TASK_DONE);
	dsm_detach(seg);
	proc_exit(0);
}

/* ---- last-seen notes ---- */

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
 * Hand notes[0 .. n) of one database to a "seen" worker.  Without `wait`,
 * true once the worker is registered; with it, true once it has committed.
 */
static bool
SeenSend(Oid database, const SeenNote *notes, int n, bool wait)
{
	char	   *payload = SeenPayload(notes, n);
	dsm_segment *seg;
	BackgroundWorkerHandle *handle;
	bool		ok;

	seg = TaskCreate(database, "seen", payload);
	pfree(payload);
	if (seg == NULL)
		return false;
	if (wait)
		return TaskRun(seg);
	ok = TaskLaunch(seg, false, &handle);
	if (ok)
		pfree(handle);
	else
		dsm_unpin_segment(dsm_segment_handle(seg));
	dsm_detach(seg);
	return ok;
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
 * (the database was dropped, or no worker slot was free for a second) is
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
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
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

/* ---- cleanup worker ---- */

/* One cleanup run, in its own transaction; errors are logged, not fatal. */
static void
CleanupRunOnce(MemoryContext loopcxt)
{
	PG_TRY();
	{
		int			ret;
		bool		isnull;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "authctx cleanup");

		ret = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension "
						  "WHERE extname OPERATOR(pg_catalog.=) 'authctx'",
						  true, 1);
		if (ret != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("authctx cleanup: SPI error %d", ret)));
		if (SPI_processed == 1)
		{
			ret = SPI_execute("SELECT authctx.cleanup()", false, 1);
			if (ret != SPI_OK_SELECT || SPI_processed != 1)
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("authctx cleanup: SPI error %d", ret)));
			ereport(DEBUG1,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg_internal("authctx cleanup removed " INT64_FORMAT " rows",
									 DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc,
																 1, &isnull)))));
		}
		else
			ereport(DEBUG1,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg_internal("authctx cleanup: extension not installed in this database")));

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* report, roll back and carry on with the next run */
		MemoryContextSwitchTo(loopcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();

	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Main of the static cleanup worker.  Sleeps on its latch, reloads the
 * configuration on SIGHUP, exits on SIGTERM or postmaster death, and runs
 * cleanup every authctx.cleanup_interval; while that is 0 it does not even
 * connect.  A change of cleanup_database needs a new connection: the worker
 * exits and the postmaster starts it again (bgw_restart_time, 10s).
 */
void
authctx_cleanup_main(Datum main_arg)
{
	MemoryContext loopcxt;
	char	   *dbname;
	TimestampTz last_run;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* disabled: do not even connect (the database may not exist) */
	while (authctx_cleanup_interval <= 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}

	dbname = MemoryContextStrdup(TopMemoryContext, authctx_cleanup_database);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	SetConfigOption("lock_timeout", AUTONOMOUS_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);

	loopcxt = AllocSetContextCreate(TopMemoryContext, "authctx cleanup",
									ALLOCSET_DEFAULT_SIZES);
	last_run = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz next_run;
		long		timeout = -1;
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;

		/* the interval may change at any SIGHUP: recompute every time */
		next_run = TimestampTzPlusMilliseconds(last_run,
											   (int64) authctx_cleanup_interval * 1000);
		if (authctx_cleanup_interval > 0)
		{
			timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_run);
			events |= WL_TIMEOUT;
		}
		if (timeout != 0)
		{
			(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(dbname, authctx_cleanup_database) != 0)
			{
				ereport(LOG,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("authctx cleanup worker restarting for database \"%s\"",
								authctx_cleanup_database)));
				proc_exit(1);
			}
			continue;
		}

		if (authctx_cleanup_interval <= 0 ||
			GetCurrentTimestamp() < TimestampTzPlusMilliseconds(last_run,
																 (int64) authctx_cleanup_interval * 1000))
			continue;

		MemoryContextSwitchTo(loopcxt);
		CleanupRunOnce(loopcxt);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);

		last_run = GetCurrentTimestamp();
	}
}
