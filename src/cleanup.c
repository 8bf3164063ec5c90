/*-------------------------------------------------------------------------
 *
 * cleanup.c
 *		The cleanup worker: authctx.cleanup() every authctx.cleanup_interval
 *		in authctx.cleanup_database (preloaded only).
 *
 * A static background worker, connected to no database (like the last-seen
 * worker), wakes every authctx.cleanup_interval (0 disables it), looks up
 * authctx.cleanup_database in pg_database (a shared catalog, readable
 * without a database connection) and, when the database is there and
 * accepts connections, runs authctx.cleanup() there through a "cleanup"
 * task (worker.c): a short-lived worker connected to that database, with
 * the identity and pinned settings every task has, which quietly does
 * nothing where the extension is not installed.  cleanup() deletes in
 * batches with SKIP LOCKED, so it never waits for or stalls a request.
 *
 * Because the static worker never connects to the target itself, a
 * database that does not exist, does not accept connections
 * (datallowconn = false) or is invalid (an interrupted DROP DATABASE) is
 * just a run that is skipped: the worker does not exit, so there is no
 * restart loop.  What happens is logged once per change (the database is
 * missing, refuses connections, the run failed, cleanup runs again), not
 * at every interval; the database is looked for again at every interval,
 * so cleanup resumes on its own when it appears.  A change of
 * cleanup_database takes effect at the next run, without a restart.
 *
 * Shared state: none.  The worker reloads the configuration on SIGHUP and
 * exits on SIGTERM or postmaster death; the postmaster restarts it 10 s
 * after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authctx.h"

/* authctx.cleanup_interval (seconds, 0 = off) and authctx.cleanup_database. */
static int	authctx_cleanup_interval = 600;
static char *authctx_cleanup_database = NULL;

/* What the last run found; a change is logged, a repetition is not. */
typedef enum CleanupState
{
	CLEANUP_OK,					/* ran (or nothing to do there) */
	CLEANUP_MISSING,			/* no such database */
	CLEANUP_NO_CONNECTIONS,		/* datallowconn = false, or invalid */
	CLEANUP_FAILED				/* the task did not commit */
} CleanupState;

PGDLLEXPORT void authctx_cleanup_main(Datum main_arg);

/* Define the cleanup settings; when preloaded, register the worker. */
void
CleanupInit(void)
{
	DefineCustomIntVariable("authctx.cleanup_interval",
							"Time between runs of authctx.cleanup() by the background worker.",
							"0 disables the worker's runs.  The worker exists only when authctx is in shared_preload_libraries.",
							&authctx_cleanup_interval,
							600, 0, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("authctx.cleanup_database",
							   "Database in which the background worker runs authctx.cleanup().",
							   "The worker skips it quietly when the extension is not installed there, and logs once when it does not exist or does not accept connections.",
							   &authctx_cleanup_database,
							   "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		WorkerRegisterStatic("authctx_cleanup_main", "authctx cleanup");
}

/*
 * Look `name` up in pg_database: CLEANUP_OK with its oid when a worker can
 * connect to it.  A heap scan of a shared catalog, as the autovacuum
 * launcher does, since this worker is connected to no database.
 */
static CleanupState
CleanupFindDatabase(const char *name, Oid *dboid)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	CleanupState state = CLEANUP_MISSING;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), name) != 0)
			continue;
		*dboid = db->oid;
		state = db->datallowconn && !database_is_invalid_form(db) ?
			CLEANUP_OK : CLEANUP_NO_CONNECTIONS;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return state;
}

/* Say what changed since the last run. */
static void
CleanupReport(CleanupState state, const char *dbname, WorkerTaskStatus status)
{
	switch (state)
	{
		case CLEANUP_OK:
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("authctx cleanup runs again in database \"%s\"", dbname)));
			break;
		case CLEANUP_MISSING:
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" named by authctx.cleanup_database does not exist", dbname),
					 errdetail("Cleanup is skipped; the database is looked for again every authctx.cleanup_interval.")));
			break;
		case CLEANUP_NO_CONNECTIONS:
			ereport(LOG,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("database \"%s\" named by authctx.cleanup_database does not accept connections", dbname),
					 errdetail("Cleanup is skipped; the database is looked at again every authctx.cleanup_interval.")));
			break;
		case CLEANUP_FAILED:
			ereport(LOG,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("authctx cleanup did not complete in database \"%s\"", dbname),
					 errdetail(status == WORKER_TASK_NO_SLOT ?
							   "No background worker slot became free." :
							   "The worker that runs it failed or did not commit."),
					 errhint("Check max_worker_processes, and the server log for the worker's error.")));
			break;
	}
}

/*
 * One cleanup run in `dbname`, through a task worker connected there;
 * returns what it found, logging it when it differs from `logged`.
 */
static CleanupState
CleanupRunOnce(const char *dbname, CleanupState logged)
{
	Oid			dboid = InvalidOid;
	CleanupState state = CleanupFindDatabase(dbname, &dboid);
	WorkerTaskStatus status = WORKER_TASK_DONE;
	char	   *result = NULL;

	if (state == CLEANUP_OK)
	{
		status = WorkerTaskRun(dboid, "cleanup", "{}", true, &result);
		if (status == WORKER_TASK_DONE)
			ereport(DEBUG1,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg_internal("authctx cleanup in database \"%s\": %s", dbname, result)));
		else
			state = CLEANUP_FAILED;
	}
	if (state != logged)
		CleanupReport(state, dbname, status);
	return state;
}

/*
 * Main of the static cleanup worker.  Sleeps on its latch, reloads the
 * configuration on SIGHUP, exits on SIGTERM or postmaster death, and runs
 * cleanup every authctx.cleanup_interval; while that is 0, it only waits
 * for a reload.
 */
void
authctx_cleanup_main(Datum main_arg)
{
	MemoryContext loopcxt;
	char	   *dbname;
	TimestampTz last_run;
	CleanupState logged = CLEANUP_OK;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WorkerConnect(InvalidOid);

	dbname = MemoryContextStrdup(TopMemoryContext, authctx_cleanup_database);
	loopcxt = AllocSetContextCreate(TopMemoryContext, "authctx cleanup",
									ALLOCSET_DEFAULT_SIZES);
	last_run = GetCurrentTimestamp();

	for (;;)
	{
		long		timeout = -1;
		int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;

		/* the interval may change at any SIGHUP: recompute every time */
		if (authctx_cleanup_interval > 0)
		{
			timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													  TimestampTzPlusMilliseconds(last_run,
																				  (int64) authctx_cleanup_interval * 1000));
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
			bool		was_paused = authctx_cleanup_interval <= 0;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (was_paused && authctx_cleanup_interval > 0)
				ereport(LOG,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("authctx cleanup resumes: it runs every %d s", authctx_cleanup_interval)));
			else if (!was_paused && authctx_cleanup_interval <= 0)
				ereport(LOG,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("authctx cleanup is paused: authctx.cleanup_interval is 0")));
			if (strcmp(dbname, authctx_cleanup_database) != 0)
			{
				pfree(dbname);
				dbname = MemoryContextStrdup(TopMemoryContext, authctx_cleanup_database);
				logged = CLEANUP_OK;
				ereport(LOG,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("authctx cleanup now runs in database \"%s\"", dbname)));
			}
			continue;
		}

		if (authctx_cleanup_interval <= 0 ||
			GetCurrentTimestamp() < TimestampTzPlusMilliseconds(last_run,
																 (int64) authctx_cleanup_interval * 1000))
			continue;

		MemoryContextSwitchTo(loopcxt);
		logged = CleanupRunOnce(dbname, logged);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);

		last_run = GetCurrentTimestamp();
	}
}
