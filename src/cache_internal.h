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

/* Salts of a database's epoch and tenant slots. */
#define CACHE_SALT_EPOCH	0x45504f43
#define CACHE_SALT_TENANT	0x54454e41

/*
 * The protocol's shared state, in the cache's shared memory, attached by
 * cache.c at startup.  authctx_cache_clock is NULL when there is no cache.
 */
extern pg_atomic_uint64 *authctx_cache_clock;	/* the generation clock */
extern uint32 authctx_cache_nslots;	/* slots: a power of two */
extern pg_atomic_uint64 *authctx_cache_gen; /* gen[nslots] */
extern pg_atomic_uint32 *authctx_cache_busy;	/* busy[nslots] */

/* cache_coherence.c */
extern uint32 CacheUserSlot(const pg_uuid_t *user_id);
extern uint32 CacheTokenSlot(char kind, const pg_uuid_t *id);
extern uint32 CacheDbSlot(uint32 salt);
extern bool CacheStampValid(uint64 stamp, const uint32 *slots, int n);
extern bool CacheUsable(void);

#endif							/* AUTHCTX_CACHE_INTERNAL_H */
