/*-------------------------------------------------------------------------
 *
 * cache_standby.c
 *		The shared-memory cache on hot standbys: invalidation carried by WAL
 *		replay, the listener worker, and the switch at promotion.
 *
 * On a primary, triggers and transaction callbacks keep the cache coherent
 * (cache_coherence.c).  WAL replay runs neither, so this file gives the
 * protocol a second channel that replay does run: at PRE_COMMIT a
 * transaction that pended slots also registers one relcache invalidation
 * per slot, for a synthetic relation id (CACHE_RELID_BASE + the slot's
 * wide key, shared: database InvalidOid).  PostgreSQL writes them into the
 * commit record; a standby's startup process, replaying the commit, makes
 * it visible and then queues the messages for every backend; each backend
 * that reads them runs CacheRelcacheCallback, which bumps the slot.  The
 * listener worker reads them too, so that a backend born after a message
 * was queued (it never sees that message) may trust the cache once a
 * listener round that began after its first cache use has completed.  At
 * promotion the whole cache is made stale once.  The correctness argument
 * is in cache_coherence.c's essay ("Standbys").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/wait_event.h"

#include "authctx.h"
#include "cache_internal.h"

/*
 * Synthetic relation ids: CACHE_RELID_BASE + wide key.  Real relations only
 * reach these oids after the oid counter wraps far; a collision costs a
 * spurious relcache rebuild on one side and a spurious miss on the other.
 */
#define CACHE_RELID_BASE	((Oid) 0xFF000000)

/*
 * How long the listener sleeps when nobody pokes it, in milliseconds
 * (authctx.debug_cache_listener_nap: a test lengthens it, so that only
 * pokes wake the listener).
 */
static int	cache_listener_nap = 1000;

PGDLLEXPORT void authctx_cache_listener_main(Datum main_arg);

/* Set once this backend may read the cache during recovery. */
static bool standby_synced = false;
static uint64 standby_birth_round = 0;

/*
 * Relcache invalidations arrive here, in every backend and the listener:
 * on a standby (replayed commits) a synthetic id bumps its slot, and a
 * reset of this backend's invalidation queue (InvalidOid: messages may
 * have been lost) makes everything stale.  On a primary the transaction
 * callbacks already bumped: nothing to do.
 */
static void
CacheRelcacheCallback(Datum arg, Oid relid)
{
	if (authctx_cache_clock == NULL || !RecoveryInProgress())
		return;
	if (relid == InvalidOid)
		CacheBumpSlot(authctx_cache_nslots);
	else if (relid >= CACHE_RELID_BASE && relid - CACHE_RELID_BASE <= CACHE_WIDE_MASK)
		CacheBumpSlot(CacheLocalSlot(relid - CACHE_RELID_BASE));
}

/*
 * Register, in this transaction, the relcache invalidation of the
 * synthetic relation of each wide key: PostgreSQL carries them in the
 * commit record to standbys.
 */
void
CacheSendSlots(const uint32 *wide, int n)
{
	Size		hoff = MAXALIGN(SizeofHeapTupleHeader);
	HeapTupleData tuple;
	Form_pg_class rel;

	/* a pg_class tuple with only what CacheInvalidateRelcacheByTuple reads */
	memset(&tuple, 0, sizeof(tuple));
	tuple.t_len = hoff + sizeof(FormData_pg_class);
	tuple.t_data = (HeapTupleHeader) palloc0(tuple.t_len);
	tuple.t_data->t_hoff = hoff;
	rel = (Form_pg_class) GETSTRUCT(&tuple);
	rel->relisshared = true;	/* database InvalidOid: every backend */
	for (int i = 0; i < n; i++)
	{
		rel->oid = CACHE_RELID_BASE + (wide[i] & CACHE_WIDE_MASK);
		CacheInvalidateRelcacheByTuple(&tuple);
	}
	pfree(tuple.t_data);
}

/* Wake the listener, if there is one, for a round. */
static void
CachePokeListener(void)
{
	if (pg_atomic_read_u32(&authctx_cache_standby->listener_pid) != 0)
	{
		pg_read_barrier();
		SetLatch(authctx_cache_standby->listener_latch);
	}
}

/*
 * May this backend read the cache now?  What CacheUsable() says, and:
 *	- during recovery, after reading the invalidations queued so far, and
 *	  once a listener round that began after this backend's first cache
 *	  use has completed (until then: the tables, and a poke);
 *	- on a primary, after the cache has been made stale once since
 *	  recovery (the first backend to get here does it).
 */
bool
CacheReadable(void)
{
	CacheStandbyShared *st = authctx_cache_standby;

	if (!CacheUsable())
		return false;
	if (RecoveryInProgress())
	{
		pg_memory_barrier();	/* AcceptInvalidationMessages' first read is unlocked */
		AcceptInvalidationMessages();
		if (standby_synced)
			return true;
		if (standby_birth_round == 0)
			standby_birth_round = pg_atomic_read_u64(&st->round_started) + 1;
		if (pg_atomic_read_u64(&st->round_done) < standby_birth_round)
		{
			CachePokeListener();
			return false;
		}
		standby_synced = true;
		return true;
	}
	if (pg_atomic_read_u32(&st->recovery_pending) != 0)
	{
		CacheBumpSlot(authctx_cache_nslots);
		pg_atomic_write_u32(&st->recovery_pending, 0);
	}
	return true;
}

/* Initialize the shared state (shmem startup, first attach). */
void
CacheStandbyShmemInit(void)
{
	CacheStandbyShared *st = authctx_cache_standby;

	pg_atomic_init_u64(&st->round_started, 0);
	pg_atomic_init_u64(&st->round_done, 0);
	pg_atomic_init_u32(&st->recovery_pending, 1);
	pg_atomic_init_u32(&st->listener_pid, 0);
	st->listener_latch = NULL;
}

/* Register the relcache callback and the listener (preloaded, with a cache). */
void
CacheStandbyInit(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("authctx.debug_cache_listener_nap",
							"Testing only: milliseconds the standby's cache listener sleeps between unrequested rounds.",
							NULL,
							&cache_listener_nap,
							1000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(CacheRelcacheCallback, (Datum) 0);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "authctx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "authctx_cache_listener_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "authctx cache listener");
	snprintf(worker.bgw_type, BGW_MAXLEN, "authctx cache listener");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* Listener exit: nobody may wait for its rounds any more. */
static void
CacheListenerExit(int code, Datum arg)
{
	pg_atomic_write_u32(&authctx_cache_standby->listener_pid, 0);
}

/*
 * The listener: on a hot standby, read the invalidation queue in numbered
 * rounds (poked by backends, and at least once a second); on a primary,
 * or once promoted, exit for good (exit code 0 unregisters it).
 */
void
authctx_cache_listener_main(Datum main_arg)
{
	CacheStandbyShared *st = authctx_cache_standby;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	if (st == NULL || !RecoveryInProgress())
		proc_exit(0);

	/*
	 * This process joined the invalidation queue just now: a message queued
	 * before, which no live backend may ever read (a predecessor listener
	 * died, or none existed yet at startup, and the backends connected then
	 * sit idle), is covered by making everything stale before this listener
	 * completes its first round.
	 */
	CacheBumpSlot(authctx_cache_nslots);

	st->listener_latch = MyLatch;
	pg_write_barrier();
	pg_atomic_write_u32(&st->listener_pid, (uint32) MyProcPid);
	before_shmem_exit(CacheListenerExit, (Datum) 0);

	for (;;)
	{
		uint64		round;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* begin the round before reading the queue: see the essay */
		round = pg_atomic_add_fetch_u64(&st->round_started, 1);
		StartTransactionCommand();
		AcceptInvalidationMessages();
		CommitTransactionCommand();
		pg_write_barrier();
		pg_atomic_write_u64(&st->round_done, round);

		if (!RecoveryInProgress())
			proc_exit(0);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 cache_listener_nap, PG_WAIT_EXTENSION);
	}
}
