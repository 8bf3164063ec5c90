/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The task runner: records that must outlive a failing transaction,
 *		written by a short-lived background worker in a transaction of its
 *		own, and the one place where authctx's workers connect and run SQL.
 *
 * Three files make up the worker module: this one (tasks, and the SQL
 * entry points _autonomous and _autonomous_call), seen.c (last-seen times,
 * written off the request path) and cleanup.c (the periodic cleanup
 * worker).  seen.c and cleanup.c hand their writes to this file's tasks,
 * so every statement a worker runs in a user database runs here, under the
 * identity and settings described below.
 *
 * Tasks.  A failed login must still count toward the lockout and still
 * write login_failed; a reused refresh token must still revoke its family
 * and write refresh_reuse; a failed passkey attempt must still spend its
 * challenge; admin_begin must leave admin_bypass behind.  The caller raises
 * (or may later roll back), so these rows cannot be written in its
 * transaction: PostgreSQL has no autonomous transactions.  Password and
 * passkey attempts go further: the worker decides them (kinds
 * login_attempt and webauthn_attempt), so that the decision reads the
 * latest committed state and is recorded before anyone learns it
 * (src/sql/50_session.sql, Login attempts).  Instead the
 * caller puts the database oid, a kind and a JSON payload into a dynamic
 * shared memory segment, registers a dynamic background worker (which
 * needs no preloading), passing the segment's handle as bgw_main_arg, and
 * waits for it to exit.  The worker runs
 *
 *		SELECT authctx._autonomous_apply($1::pg_catalog.text, $2::pg_catalog.jsonb)
 *
 * (or, for the internal kind "cleanup", authctx.cleanup()) in a
 * transaction of its own, with lock_timeout = 10s and a statement timeout
 * of 60 s, and writes the result, a jsonb value as text of at most
 * TASK_RESULT_MAX bytes (a larger one is an error, so the transaction does
 * not commit), into the segment.  After commit it marks the task done.
 * The caller reads that mark, and only then the result, after the worker
 * has exited: no mark means the record was not written.  The payload and
 * the result go through shared memory and SPI parameters, never through a
 * command line or an activity string, so they appear neither in
 * pg_stat_activity nor in the log; no message of the caller or the worker
 * names more than the kind.  A login_attempt payload holds a password:
 * the worker copies the payload out of the segment as soon as it has
 * attached and wipes it there, and wipes its copies once the statement
 * has run; the caller wipes its JSON text and its detoasted copy of the
 * argument once the task is over (a cancel included), and wipes the
 * segment itself when no worker ever read it.  What PL/pgSQL copied while
 * building the payload is beyond this file's reach.
 *
 * Failing closed.  A record that could not be written is an error for the
 * caller: _autonomous_call and _autonomous raise 55000, naming the kind and
 * never the payload, when no worker slot became free in time, the worker
 * failed or did not commit, or this is a standby; admin_begin refuses the
 * bypass; login and login_webauthn refuse with 28P01 before anything is
 * verified, verify_webauthn answers NULL, and refresh refuses a reused
 * token with 28000, leaving its family alive (50_session.sql, Refresh).
 * Every password or passkey attempt therefore needs one worker slot, for
 * a few tens of milliseconds: max_worker_processes must leave slots free
 * beyond max_parallel_workers (which parallel queries, run by any role, may
 * fill) and beyond other extensions' workers.  When every slot is taken,
 * registration is retried every TASK_REGISTER_POLL_MS for
 * TASK_REGISTER_WAIT_MS (2 s): long enough to ride out a burst of other
 * short-lived workers, short enough that a starved server answers within a
 * few seconds.  That wait does not accept cancel requests: the segment is
 * pinned with no worker yet to unpin it.
 *
 * Lifetime of a segment.  It is pinned before the worker is registered and
 * unpinned by the worker once it has attached, so a caller that is
 * cancelled or terminated while it waits for the worker does not destroy
 * the task under it: a client cannot dodge the lockout counter by
 * cancelling its failed login.  If the worker never attached (it could not
 * be forked), the caller unpins after seeing it stop.
 *
 * Who the worker is, and with what settings.  A worker connected to a user
 * database picks up that database's settings (ALTER DATABASE ... SET, which
 * its owner, not necessarily a superuser, controls) and those stored for
 * the role it connects as.  The worker connects as the bootstrap superuser
 * (connecting as the extension's owner would fail for a NOLOGIN owner
 * before PostgreSQL 17, and would apply settings stored for that role),
 * and then, before its first query (WorkerConnect):
 *   - puts every setting that a database or role setting changed back to
 *     the server's value (the one it had before connecting: configuration
 *     file or built-in default), and pins, at PGC_S_OVERRIDE so
 *     that nothing later in the session overrides them, search_path =
 *     pg_catalog, pg_temp; role = none; session_authorization = the
 *     bootstrap superuser; lock_timeout; max_parallel_workers_per_gather
 *     = 0; the plpgsql settings (extra_errors, extra_warnings,
 *     variable_conflict, check_asserts, print_strict_params, stored as
 *     placeholders until plpgsql loads); default_transaction_read_only =
 *     off and default_transaction_isolation = read committed.  What a
 *     non-superuser database owner can store on PostgreSQL 15 and what it
 *     would do here: search_path (a type or function of the owner's,
 *     reached from an unqualified name or cast: superuser), role (the
 *     worker would run as the owner and fail; session_authorization too,
 *     though 15 refuses that one at connection with a warning),
 *     default_transaction_read_only and _isolation (the write fails or
 *     meets serialization failures), lock_timeout (the write gives up),
 *     standard_conforming_strings (string literals in function bodies are
 *     parsed in the worker), plpgsql.extra_errors (plpgsql's optional
 *     checks become errors in the worker), synchronous_commit (the record
 *     may be lost in a
 *     crash after the caller saw it committed), temp_tablespaces,
 *     TimeZone/DateStyle/IntervalStyle (no payload depends on them; the
 *     time zone shows in audit details), row_security, array_nulls,
 *     transform_null_equals, exit_on_error, planner settings.
 *     statement_timeout and the idle timeouts can be stored but are armed
 *     only by the client protocol loop, never in a worker; the worker arms
 *     its own statement timeout.  local_preload_libraries is not loaded by
 *     background workers.  Superuser-only settings (session_replication_role,
 *     log_*, session_preload_libraries) cannot be stored by the owner and
 *     are put back all the same if a superuser stored them.
 *   - checks that its session and current user are the bootstrap
 *     superuser, looks up the extension's owner (pg_extension.extowner),
 *     and runs the task's statement as that owner
 *     (SetUserIdAndSecContext, SECURITY_LOCAL_USERID_CHANGE).  The apply
 *     and cleanup functions are SECURITY DEFINER and run as their owner
 *     anyway; this way no statement of the worker holds more privilege
 *     than the extension's owner, should that role not be a superuser.
 *   - qualifies every name and cast in its statements.
 *
 * DEADLOCK HAZARD.  The caller sleeps on its latch while the worker runs;
 * a row lock held by the caller and needed by the worker is a wait cycle
 * that the deadlock detector cannot see (one side waits on a latch, not a
 * lock).  The SQL is therefore shaped so that the failing path has locked
 * nothing by the time it calls the worker:
 * - login and login_webauthn hold the user's row FOR SHARE, and the
 *   membership, while the worker decides their attempt.  The worker locks
 *   the account (an advisory lock no caller takes), the login_throttle
 *   row, the credential row and the challenge (which callers do not lock),
 *   and on the user's row at most KEY SHARE, by the foreign key check of a
 *   login_throttle insert: KEY SHARE conflicts with neither FOR SHARE nor a
 *   FOR NO KEY UPDATE queued behind it, and heap_lock_tuple lets a
 *   request that conflicts with no holder through without queueing.
 *   (What the caller's own transaction wrote earlier, say a password set
 *   and due for a rehash, can still make the worker wait: lock_timeout.)
 * - refresh spends a token with UPDATE ... WHERE spent_at IS NULL AND
 *   revoked_at IS NULL.  Beware: when that UPDATE has to wait for a
 *   concurrent spender, it locks the newest row version before re-checking
 *   the WHERE clause, and keeps the lock when the re-check fails.  So the
 *   UPDATE runs in a subtransaction that is rolled back when it matched
 *   nothing, which releases that lock; the reuse path then re-reads the
 *   token with a plain SELECT and calls the worker holding nothing.  A
 *   token spent earlier in the caller's own transaction is recognised (its
 *   row version's xmin is still in progress) and refused without calling
 *   the worker at all.
 * - audit events (admin_begin) touch only audit_log, whose inserts never
 *   conflict.
 * What remains is a caller that locked other rows of the family earlier in
 * the same transaction (say, logout of one of its sessions, then a reused
 * refresh token inside one BEGIN block).  lock_timeout bounds that case:
 * the worker gives up after ten seconds, and the caller, seeing no commit,
 * raises 55000.
 *
 * Shared state: none of its own.  Each DSM segment is owned by exactly one
 * caller/worker pair, whose only cross-process synchronisation is the
 * state word: the worker writes the result, then commits, then sets
 * TASK_DONE; the caller reads the state after the worker has exited
 * (process exit orders the writes before the read; barriers document it)
 * and reads the result only when it says TASK_DONE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "authctx.h"

#define TASK_KIND_LEN			32
#define TASK_LOCK_TIMEOUT		"10s"
#define TASK_STMT_TIMEOUT_MS	60000
/* a result, as text, is at most this long (NUL included) */
#define TASK_RESULT_MAX			65536
/* waiting for a free worker slot: every 20 ms, for 2 s */
#define TASK_REGISTER_POLL_MS	20
#define TASK_REGISTER_WAIT_MS	2000

/* Task states, written by the worker. */
#define TASK_PENDING	0
#define TASK_ATTACHED	1		/* worker attached; it unpins the segment */
#define TASK_DONE		2		/* committed; the result is in place */

/* The contents of one task's DSM segment. */
typedef struct AutonomousTask
{
	Oid			database;		/* database to connect to */
	pg_atomic_uint32 state;		/* TASK_* */
	char		kind[TASK_KIND_LEN];	/* a TaskKind's name */
	Size		payload_len;	/* strlen of the payload */
	Size		result_max;		/* room for the result, NUL included; 0: none */
	Size		result_len;		/* strlen of the result, set before commit */
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* payload (wiped once read), NUL,
												 * result area */
} AutonomousTask;

#define TaskResult(task)	((task)->data + (task)->payload_len + 1)

/* What a kind of task runs.  $1 is the kind, $2 the payload (both text). */
typedef struct TaskKind
{
	const char *name;
	const char *sql;			/* one row, one jsonb (or void) column */
	bool		from_sql;		/* may be asked for by _autonomous(_call) */
	bool		optional;		/* extension not installed: done, quietly */
	int			timeout_ms;		/* statement timeout; 0 for none */
	const char *type;			/* bgw_type of its worker */
} TaskKind;

#define TASK_APPLY_SQL \
	"SELECT authctx._autonomous_apply($1::pg_catalog.text, $2::pg_catalog.jsonb)"

static const TaskKind task_kinds[] = {
	{"audit", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"login_attempt", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"webauthn_attempt", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"login_failed", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"refresh_reuse", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"webauthn_failed", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	{"seen", TASK_APPLY_SQL, true, false, TASK_STMT_TIMEOUT_MS, "authctx autonomous"},
	/* cleanup.c's runs: any size, and quietly nothing without the extension */
	{"cleanup", "SELECT pg_catalog.jsonb_build_object('removed', authctx.cleanup())",
	 false, true, 0, "authctx cleanup run"},
};

/*
 * Settings pinned in every worker, after the stored ones are put back.  The
 * plpgsql ones are placeholders until plpgsql loads, which then adopts
 * these values.
 */
static const struct
{
	const char *name;
	const char *value;
}			pinned_settings[] = {
	{"search_path", "pg_catalog, pg_temp"},
	{"role", "none"},
	{"lock_timeout", TASK_LOCK_TIMEOUT},
	{"statement_timeout", "0"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"max_parallel_workers_per_gather", "0"},
	{"plpgsql.extra_errors", "none"},
	{"plpgsql.extra_warnings", "none"},
	{"plpgsql.variable_conflict", "error"},
	{"plpgsql.check_asserts", "on"},
	{"plpgsql.print_strict_params", "off"},
};

/* A setting's value before connecting (WorkerConnect). */
typedef struct ServerSetting
{
	struct config_generic *gen;
	char	   *value;
} ServerSetting;

/* Why the last WorkerRunAutonomous failed, for the SQL error's detail. */
static WorkerTaskStatus autonomous_status = WORKER_TASK_DONE;

PGDLLEXPORT void authctx_autonomous_main(Datum main_arg);

PG_FUNCTION_INFO_V1(authctx_autonomous);
PG_FUNCTION_INFO_V1(authctx_autonomous_call);

/* The kind called `name`, or NULL. */
static const TaskKind *
TaskKindByName(const char *name)
{
	for (int i = 0; i < lengthof(task_kinds); i++)
	{
		if (strcmp(task_kinds[i].name, name) == 0)
			return &task_kinds[i];
	}
	return NULL;
}

/* Kinds that SQL may ask for; anything else is refused early. */
static bool
AutonomousKindValid(const char *kind)
{
	const TaskKind *k = TaskKindByName(kind);

	return k != NULL && k->from_sql;
}

/*
 * Define the worker module's settings; when preloaded, register its static
 * workers and ask for the last-seen queue's shared memory.
 */
void
WorkerInit(void)
{
	CleanupInit();
	SeenInit();
}

/*
 * Register a static worker, restarted 10 s after it exits.  Both static
 * workers ask for a database connection but connect to none, which shows
 * them in pg_stat_activity and lets them read shared catalogs.
 */
void
WorkerRegisterStatic(const char *function, const char *name)
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
 * Put a setting in place at PGC_S_OVERRIDE, where nothing overrides it;
 * false (reported at `elevel`) when the value is refused.
 */
static bool
PinSetting(const char *name, const char *value, int elevel)
{
	return set_config_option(name, value, PGC_SUSET, PGC_S_OVERRIDE,
							 GUC_ACTION_SET, true, elevel, false) > 0;
}

/* Is this source a database or role setting (pg_db_role_setting)? */
static inline bool
SourceIsStored(GucSource source)
{
	return source == PGC_S_GLOBAL || source == PGC_S_DATABASE ||
		source == PGC_S_USER || source == PGC_S_DATABASE_USER;
}

/*
 * The value of every setting a session can change, as this worker has it
 * before connecting: the server's (configuration file, command line or
 * built-in default).  Placeholders, and the settings excluded from RESET
 * ALL (role and session_authorization, pinned by name; the transaction_*
 * settings, taken from their defaults at every transaction start), are
 * left out.  Allocated in TopMemoryContext; a worker does this once.
 */
static ServerSetting *
SaveServerSettings(int *count)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();
	ServerSetting *saved = MemoryContextAllocZero(TopMemoryContext,
												  n * sizeof(ServerSetting));

	*count = 0;
	for (int i = 0; i < n; i++)
	{
		struct config_generic *g = vars[i];
		char		buf[64];
		const char *value = NULL;

		if ((g->context != PGC_USERSET && g->context != PGC_SUSET) ||
			(g->flags & (GUC_NO_RESET_ALL | GUC_CUSTOM_PLACEHOLDER)) != 0)
			continue;
		switch (g->vartype)
		{
			case PGC_BOOL:
				value = *((struct config_bool *) g)->variable ? "on" : "off";
				break;
			case PGC_INT:
				snprintf(buf, sizeof(buf), "%d", *((struct config_int *) g)->variable);
				value = buf;
				break;
			case PGC_REAL:
				snprintf(buf, sizeof(buf), "%.17g", *((struct config_real *) g)->variable);
				value = buf;
				break;
			case PGC_STRING:
				value = *((struct config_string *) g)->variable;
				break;
			case PGC_ENUM:
				value = config_enum_lookup_by_value((struct config_enum *) g,
													*((struct config_enum *) g)->variable);
				break;
		}
		if (value == NULL)
			continue;
		saved[*count].gen = g;
		saved[*count].value = MemoryContextStrdup(TopMemoryContext, value);
		(*count)++;
	}
	return saved;
}

/*
 * Connect to `database` (or to none) and give this worker the settings and
 * identity described in the header: every setting that a database or role
 * setting changed goes back to the server's value (one that its check
 * refuses outside the server's start, rare and never one that matters
 * here, keeps the stored value), the pinned ones are put in place, and
 * session and current user are the bootstrap superuser.  This runs in a
 * transaction of its own (session_authorization looks the role up) that
 * commits before any task's transaction starts, since a transaction takes
 * its read-only and isolation defaults at its start.
 */
void
WorkerConnect(Oid database)
{
	int			nsaved;
	ServerSetting *saved = SaveServerSettings(&nsaved);
	Oid			me;

	if (OidIsValid(database))
		BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
	else
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	for (int i = 0; i < nsaved; i++)
	{
		if (SourceIsStored(saved[i].gen->source))
			(void) PinSetting(saved[i].gen->name, saved[i].value, DEBUG1);
	}
	me = GetAuthenticatedUserId();
	(void) PinSetting("session_authorization", GetUserNameFromId(me, false), ERROR);
	for (int i = 0; i < lengthof(pinned_settings); i++)
		(void) PinSetting(pinned_settings[i].name, pinned_settings[i].value, ERROR);

	if (me != BOOTSTRAP_SUPERUSERID || GetSessionUserId() != me || GetUserId() != me)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("authctx worker is not running as the bootstrap superuser")));
	CommitTransactionCommand();
}

/*
 * Wipe a task's payload in its segment: it may hold a password (kind
 * login_attempt), which must not outlive its reading.
 */
static void
TaskWipePayload(AutonomousTask *task)
{
	explicit_bzero(task->data, task->payload_len);
}

/*
 * Put a task into a new, pinned DSM segment, with `result_max` bytes for
 * the result; NULL when no segment can be had.  The pin keeps the segment
 * alive until the worker has attached, whatever happens to the caller
 * meanwhile.
 */
static dsm_segment *
TaskCreate(Oid database, const char *kind, const char *payload, Size result_max)
{
	Size		len = strlen(payload);
	dsm_segment *seg;
	AutonomousTask *task;

	seg = dsm_create(offsetof(AutonomousTask, data) + len + 1 + result_max,
					 DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return NULL;
	task = (AutonomousTask *) dsm_segment_address(seg);
	task->database = database;
	pg_atomic_init_u32(&task->state, TASK_PENDING);
	strlcpy(task->kind, kind, sizeof(task->kind));
	task->payload_len = len;
	task->result_max = result_max;
	task->result_len = 0;
	memcpy(task->data, payload, len + 1);
	dsm_pin_segment(seg);
	return seg;
}

/*
 * Register the worker for a segment; false when no slot became free (with
 * `wait`, within TASK_REGISTER_WAIT_MS).
 */
static bool
TaskLaunch(dsm_segment *seg, const TaskKind *kind, bool wait,
		   BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	int			tries = wait ? TASK_REGISTER_WAIT_MS / TASK_REGISTER_POLL_MS : 1;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "authctx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "authctx_autonomous_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for PID %d", kind->type, MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", kind->type);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = wait ? MyProcPid : 0;

	for (int i = 0; i < tries; i++)
	{
		if (RegisterDynamicBackgroundWorker(&worker, handle))
			return true;
		if (i + 1 < tries)
		{
			/*
			 * No CHECK_FOR_INTERRUPTS here (see the header): an error now
			 * would also leave the segment pinned with no worker to unpin
			 * it.
			 */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 TASK_REGISTER_POLL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	return false;
}

/*
 * Launch the worker for a task segment and wait for it to exit; with
 * `result`, hand back a palloc'd copy of its result.  Detaches from the
 * segment in every case.
 */
static WorkerTaskStatus
TaskRun(dsm_segment *seg, const TaskKind *kind, char **result)
{
	AutonomousTask *task = (AutonomousTask *) dsm_segment_address(seg);
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	uint32		state;
	WorkerTaskStatus ret = WORKER_TASK_FAILED;

	if (!TaskLaunch(seg, kind, true, &handle))
	{
		TaskWipePayload(task);
		dsm_unpin_segment(dsm_segment_handle(seg));
		dsm_detach(seg);
		return WORKER_TASK_NO_SLOT;
	}

	/*
	 * Interruptible: a cancelled caller leaves, the pinned segment and the
	 * worker carry on without it.
	 */
	status = WaitForBackgroundWorkerShutdown(handle);
	pg_read_barrier();
	state = pg_atomic_read_u32(&task->state);

	/* the worker is gone: whatever it did not wipe, we do */
	if (status == BGWH_STOPPED)
		TaskWipePayload(task);
	/* a worker that never attached cannot unpin; do it for it */
	if (status == BGWH_STOPPED && state == TASK_PENDING)
		dsm_unpin_segment(dsm_segment_handle(seg));
	if (status == BGWH_STOPPED && state == TASK_DONE)
	{
		ret = WORKER_TASK_DONE;
		if (result != NULL)
			*result = pnstrdup(TaskResult(task), Min(task->result_len, task->result_max));
	}
	dsm_detach(seg);
	pfree(handle);
	return ret;
}

/*
 * Run a task of kind `kind` in `database` through a background worker.
 * With `wait`, wait for it: WORKER_TASK_DONE once it has committed, and
 * `result` (if not NULL) gets its result.  Without, WORKER_TASK_DONE once
 * it is registered (one try, no result).
 */
WorkerTaskStatus
WorkerTaskRun(Oid database, const char *kind, const char *payload, bool wait,
			  char **result)
{
	const TaskKind *k = TaskKindByName(kind);
	dsm_segment *seg;
	BackgroundWorkerHandle *handle;
	bool		ok;

	if (k == NULL)
		elog(ERROR, "unknown authctx task kind \"%s\"", kind);
	seg = TaskCreate(database, kind, payload,
					 wait && result != NULL ? TASK_RESULT_MAX : 0);
	if (seg == NULL)
		return WORKER_TASK_NO_SEGMENT;
	if (wait)
		return TaskRun(seg, k, result);
	ok = TaskLaunch(seg, k, false, &handle);
	if (ok)
		pfree(handle);
	else
		dsm_unpin_segment(dsm_segment_handle(seg));
	dsm_detach(seg);
	return ok ? WORKER_TASK_DONE : WORKER_TASK_NO_SLOT;
}

/*
 * Run _autonomous_apply(kind, payload) in a transaction of its own, in a
 * background worker, and wait for it.  True when the worker committed;
 * then `result`, if not NULL, gets its result (palloc'd jsonb text).
 * Never raises for a worker that could not run: the caller refuses what
 * needed the record, naming only the kind.
 */
bool
WorkerRunAutonomous(const char *kind, const char *payload_json, char **result)
{
	if (kind == NULL || payload_json == NULL || !AutonomousKindValid(kind))
		autonomous_status = WORKER_TASK_FAILED;
	/* a standby cannot write, and no worker could either */
	else if (RecoveryInProgress() || !IsUnderPostmaster)
		autonomous_status = WORKER_TASK_STANDBY;
	else
		autonomous_status = WorkerTaskRun(MyDatabaseId, kind, payload_json, true, result);
	return autonomous_status == WORKER_TASK_DONE;
}

/* Raise the error of a record that could not be written (the kind only). */
static void
AutonomousFailed(const char *kind)
{
	char	   *detail;

	switch (autonomous_status)
	{
		case WORKER_TASK_STANDBY:
			detail = pstrdup("This server is a standby, which cannot write.");
			break;
		case WORKER_TASK_NO_SLOT:
			detail = psprintf("No background worker slot became free within %d ms.",
							  TASK_REGISTER_WAIT_MS);
			break;
		case WORKER_TASK_NO_SEGMENT:
			detail = pstrdup("No dynamic shared memory segment was available for the task.");
			break;
		default:
			detail = pstrdup("The background worker that writes it failed or did not commit.");
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("could not write the \"%s\" record in a transaction of its own", kind),
			 errdetail("%s", detail),
			 errhint("Check max_worker_processes (it must leave slots free beyond max_parallel_workers), and the server log for the worker's error.")));
}

/*
 * The kind and payload of an SQL call, checked; the payload as JSON text,
 * in a buffer sized so that it is (in practice) never reallocated, which
 * would leave a copy behind in freed memory.  *payload is the argument,
 * detoasted: a copy of ours when it was toasted.
 */
static char *
AutonomousArgs(FunctionCallInfo fcinfo, char **kind, Jsonb **payload)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("kind and payload of an autonomous record must not be null")));
	*kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!AutonomousKindValid(*kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown autonomous record kind \"%s\"", *kind)));
	*payload = PG_GETARG_JSONB_P(1);
	return JsonbToCString(NULL, &(*payload)->root, 2 * VARSIZE(*payload) + 64);
}

/*
 * Wipe this backend's copies of a payload once the task has run: the JSON
 * text, and the detoasted argument when it is our copy (the caller's datum
 * is not ours to change).  A login_attempt payload holds a password.
 */
static void
AutonomousWipeArgs(FunctionCallInfo fcinfo, Jsonb *payload, char *json)
{
	explicit_bzero(json, strlen(json));
	pfree(json);
	if ((Pointer) payload != DatumGetPointer(PG_GETARG_DATUM(1)))
	{
		explicit_bzero(payload, VARSIZE(payload));
		pfree(payload);
	}
}

/*
 * Run a checked SQL call's task; its copies of the payload are wiped
 * whatever happens, a cancel while waiting for the worker included.
 */
static bool
AutonomousRun(FunctionCallInfo fcinfo, const char *kind, Jsonb *payload, char *json,
			  char **result)
{
	volatile bool done = false;

	PG_TRY();
	{
		done = WorkerRunAutonomous(kind, json, result);
	}
	PG_CATCH();
	{
		AutonomousWipeArgs(fcinfo, payload, json);
		PG_RE_THROW();
	}
	PG_END_TRY();
	AutonomousWipeArgs(fcinfo, payload, json);
	return done;
}

/*
 * SQL: authctx._autonomous_call(kind text, payload jsonb) RETURNS jsonb.
 * Internal (revoked from PUBLIC).  The record's result, or 55000 when it
 * could not be written.
 */
Datum
authctx_autonomous_call(PG_FUNCTION_ARGS)
{
	char	   *kind;
	Jsonb	   *payload;
	char	   *json = AutonomousArgs(fcinfo, &kind, &payload);
	char	   *result = NULL;

	if (!AutonomousRun(fcinfo, kind, payload, json, &result))
		AutonomousFailed(kind);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result)));
}

/*
 * SQL: authctx._autonomous(kind text, payload jsonb) RETURNS boolean, as
 * 0.1.0's SQL calls it.  Internal.  True, or 55000 when the record could
 * not be written (0.1.0 warned and returned false).
 */
Datum
authctx_autonomous(PG_FUNCTION_ARGS)
{
	char	   *kind;
	Jsonb	   *payload;
	char	   *json = AutonomousArgs(fcinfo, &kind, &payload);

	if (!AutonomousRun(fcinfo, kind, payload, json, NULL))
		AutonomousFailed(kind);
	PG_RETURN_BOOL(true);
}

/*
 * The owner of the extension in this database, or InvalidOid when it is
 * not installed.  Runs as the bootstrap superuser with pinned settings.
 */
static Oid
TaskExtensionOwner(void)
{
	Oid			owner = InvalidOid;
	bool		isnull;

	if (SPI_execute("SELECT e.extowner FROM pg_catalog.pg_extension e "
					"WHERE e.extname OPERATOR(pg_catalog.=) 'authctx'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed");
	if (SPI_processed == 1)
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	return owner;
}

/*
 * Run the task's statement as `owner` and put its result into the segment
 * (before commit; the caller reads it only once the task is marked done).
 */
static void
TaskExecute(AutonomousTask *task, const TaskKind *kind, Oid owner, const char *payload)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	Oid			save_user;
	int			save_sec;
	int			ret;
	char	   *result = NULL;
	Size		len;

	values[0] = CStringGetTextDatum(task->kind);
	values[1] = CStringGetTextDatum(payload);

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (kind->timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, kind->timeout_ms);
	ret = SPI_execute_with_args(kind->sql, 2, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("authctx task \"%s\" failed: SPI error %d", task->kind, ret)));
	if (SPI_gettypeid(SPI_tuptable->tupdesc, 1) != VOIDOID)	/* 0.1.0's apply */
		result = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (kind->timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	SetUserIdAndSecContext(save_user, save_sec);
	explicit_bzero(VARDATA(DatumGetPointer(values[1])),
				   VARSIZE(DatumGetPointer(values[1])) - VARHDRSZ);

	if (result == NULL)
		result = "{}";
	len = strlen(result);
	if (task->result_max > 0)
	{
		if (len >= task->result_max)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("result of the authctx task \"%s\" is longer than %d bytes",
							task->kind, TASK_RESULT_MAX - 1)));
		memcpy(TaskResult(task), result, len + 1);
		task->result_len = len;
	}
}

/*
 * Main of a task worker: attach, connect, pin, run, commit, report.  Any
 * error ends the process before the done mark is set, which the caller
 * reads as failure.
 */
void
authctx_autonomous_main(Datum main_arg)
{
	dsm_handle	handle = DatumGetUInt32(main_arg);
	dsm_segment *seg;
	AutonomousTask *task;
	const TaskKind *kind;
	Oid			owner;
	char	   *payload;
	char		activity[64 + TASK_KIND_LEN];

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
	kind = TaskKindByName(task->kind);
	if (kind == NULL)
		elog(ERROR, "unknown authctx task kind \"%s\"", task->kind);

	/* read the payload and wipe it from the segment at once */
	payload = MemoryContextStrdup(TopMemoryContext, task->data);
	TaskWipePayload(task);

	WorkerConnect(task->database);

	snprintf(activity, sizeof(activity), "authctx task: %s", task->kind);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	owner = TaskExtensionOwner();
	if (OidIsValid(owner))
		TaskExecute(task, kind, owner, payload);
	else if (kind->optional)
	{
		const char *skipped = "{\"installed\": false}";

		if (task->result_max > strlen(skipped))
		{
			strlcpy(TaskResult(task), skipped, task->result_max);
			task->result_len = strlen(skipped);
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"authctx\" is not installed in database %u", task->database)));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	explicit_bzero(payload, strlen(payload));

	pg_write_barrier();
	pg_atomic_write_u32(&task->state, TASK_DONE);

	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
	proc_exit(0);
}
