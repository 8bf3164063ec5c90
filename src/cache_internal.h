/*-------------------------------------------------------------------------
 *
 * cache_internal.h
 *		What the two files of the cache share: the store (cache.c) and its
 *		generation protocol (cache_coherence.c).
 *
 * Nothing outside those two files includes this header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_CACHE_INTERNAL_H
#define AUTHCTX_CACHE_INTERNAL_H

#include "port/atomics.h"
#include "storage/latch.h"

/* Salts of a database's epoch and tenant slots. */
#define CACHE_SALT_EPOCH	0x45504f43
#define CACHE_SALT_TENANT	0x54454e41

/*
 * A slot is named by a "wide" key of CACHE_WIDE_BITS bits, the same on
 * every server whatever its cache size: the key travels in WAL to standbys
 * (cache_standby.c).  A server's slot is the key's low bits: nslots is a
 * power of two no larger than 1 << CACHE_WIDE_BITS.
 */
#define CACHE_WIDE_BITS		22
#define CACHE_WIDE_MASK		((1U << CACHE_WIDE_BITS) - 1)
#define CacheLocalSlot(wide)	((wide) & (authctx_cache_nslots - 1))

/* What the standby side of the protocol shares (cache_standby.c). */
typedef struct CacheStandbyShared
{
	pg_atomic_uint64 round_started; /* listener rounds begun */
	pg_atomic_uint64 round_done;	/* the last round completed */
	pg_atomic_uint32 recovery_pending;	/* 1 until the post-recovery flush */
	pg_atomic_uint32 listener_pid;	/* 0: no listener */
	Latch	   *listener_latch; /* set by the listener, read under its pid */
} CacheStandbyShared;

/*
 * The protocol's shared state, in the cache's shared memory, attached by
 * cache.c at startup.  authctx_cache_clock is NULL when there is no cache.
 * gen[nslots] is the "all" slot: every entry depends on it.
 */
extern pg_atomic_uint64 *authctx_cache_clock;	/* the generation clock */
extern uint32 authctx_cache_nslots;	/* slots: a power of two */
extern pg_atomic_uint64 *authctx_cache_gen; /* gen[nslots + 1] */
extern pg_atomic_uint32 *authctx_cache_busy;	/* busy[nslots] */
extern CacheStandbyShared *authctx_cache_standby;

/* cache_coherence.c (slot functions return wide keys) */
extern uint32 CacheUserSlot(const pg_uuid_t *user_id);
extern uint32 CacheTokenSlot(char kind, const pg_uuid_t *id);
extern uint32 CacheDbSlot(uint32 salt);
extern bool CacheStampValid(uint64 stamp, const uint32 *slots, int n);
extern bool CacheUsable(void);
extern void CacheBumpSlot(uint32 local);

/* cache_standby.c */
extern void CacheStandbyInit(void);
extern void CacheStandbyShmemInit(void);
extern void CacheSendSlots(const uint32 *wide, int n);
extern bool CacheReadable(void);

#endif							/* AUTHCTX_CACHE_INTERNAL_H */
