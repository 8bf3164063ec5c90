/*-------------------------------------------------------------------------
 *
 * cache.c
 *		The shared-memory session cache and its coherence.
 *
 * When authctx is in shared_preload_libraries (and authctx.cache_size > 0)
 * auth_begin finds a session or API key, and the role of its user in the
 * tenant that applies, in shared memory instead of running SPI queries.
 * Without preloading nothing here is active and every lookup reads the
 * tables, as before.  Tables are the truth; the cache is a copy that can be
 * dropped at any time and that never answers "valid" when the tables would
 * say otherwise.
 *
 * What is cached
 * --------------
 * Two partitioned shared hash tables (dynahash, HASH_PARTITION), each with
 * CACHE_PARTITIONS partitions guarded by one LWLock each (named tranche
 * "authctx_cache"):
 *
 *	- sessions: key (database oid, token kind, token id) -> verifier, user,
 *	  tenant, the user's role in that tenant (or "not a member"), absolute
 *	  expiry, last-seen time, API key scopes.  160 bytes per entry (plus
 *	  dynahash's 16-byte element header and an 8-byte clock-ring pointer).
 *	  Only records that were valid when read are cached: a revoked session,
 *	  a disabled user, an expired or idle-expired record is never a
 *	  positive entry, and is removed when the tables say so.  Role and
 *	  scopes share 37 bytes; a record whose role and scopes are longer is
 *	  simply not cached (it is served from the tables every time).
 *	- memberships: key (database oid, user, tenant as named by the
 *	  request: a uuid or a slug) -> tenant id and role, for
 *	  auth_begin(token, tenant).  Positive answers only.  160 bytes.
 *
 * Each database is its own world: the database oid is part of every key,
 * and a token id found in another database's entry can never match.
 *
 * Coherence (when an entry may be used, and how a committed change makes
 * it stale) is the generation protocol of cache_coherence.c, whose header
 * has the essay; this file is the store: shared memory, the partitions,
 * the entries, and the counters.  cache_internal.h is what the two share.
 *
 * The last-seen time lives in the entry (an atomic, compare-and-swapped
 * once per SessionSeenInterval() after a successful validation; the
 * backend whose swap wins notes it for the last-seen writer, seen.c,
 * which writes it to the table off the request path).  The trigger on
 * sessions ignores last_seen_at, so those writes invalidate nothing.
 *
 * Locking rules
 * -------------
 *	- The partition lock of the key's hash (hash % CACHE_PARTITIONS) guards
 *	  that partition's hash chains, its clock ring and counters, and every
 *	  non-atomic field of its entries.  Shared to look up and copy;
 *	  exclusive to insert, overwrite, remove or evict.  Never hold two.
 *	- Under a shared lock only atomics are written: an entry's usage bit
 *	  (set on a valid hit, only when clear) and last_seen_at (CAS).
 *	- clock, gen[] and busy[] are atomics read and written without locks;
 *	  the order of operations above, with full barriers from the atomics
 *	  and a read barrier between reading busy and gen, is the protocol.
 *	- Nothing else in shared memory changes after startup.
 * Eviction: each partition holds at most its share of authctx.cache_size;
 * a full partition evicts with a clock hand over its ring of entries
 * (second chance on the usage bit).  A failed insert is not an error: the
 * request was already answered from the tables.
 *
 * Portions of the shape follow contrib/pg_stat_statements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bitutils.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "authctx.h"
#include "cache_internal.h"

PG_FUNCTION_INFO_V1(authctx_cache_stats);

/*
 * Partitions per table; equal to dynahash's NUM_FREELISTS, so that each
 * partition allocates from its own freelist.
 */
#define CACHE_PARTITIONS	32
#define CACHE_TRANCHE		"authctx_cache"

/* Bytes for role + scopes in a session entry, role in a member entry. */
#define CACHE_SESSION_TEXT	37
#define CACHE_MEMBER_ROLE	39
#define CACHE_SLUG_MAX		64

/* Session entry flags. */
#define CE_HAS_TENANT		0x01
#define CE_IS_MEMBER		0x02

typedef enum CacheTableId
{
	CT_SESSION,
	CT_MEMBER,
	CT_COUNT
} CacheTableId;

/* Bookkeeping common to both kinds of entry, right after the key. */
typedef struct CacheHead
{
	uint64		stamp;			/* clock read before the fill's snapshot */
	uint32		ring;			/* index in its partition's clock ring */
	pg_atomic_uint32 usage;		/* set by a valid hit, cleared by the hand */
} CacheHead;

typedef struct CacheSessionKey
{
	Oid			dbid;			/* database: each is its own world */
	char		kind;			/* TOKEN_SESSION or TOKEN_API_KEY */
	char		pad[3];			/* zero: keys are hashed as bytes */
	pg_uuid_t	id;				/* the token's public id */
} CacheSessionKey;

typedef struct CacheSessionEntry
{
	CacheSessionKey key;		/* hash key: must be first */
	CacheHead	head;
	pg_uuid_t	user_id;
	pg_uuid_t	tenant_id;		/* valid if CE_HAS_TENANT */
	unsigned char verifier[AUTHCTX_TOKEN_HASH_LEN]; /* stored hash, no secret */
	TimestampTz expires_at;		/* DT_NOEND: never */
	pg_atomic_uint64 last_seen_at;	/* DT_NOEND: never; CAS under shared lock */
	uint8		flags;			/* CE_* */
	uint8		role_len;		/* role: text[0 .. role_len) */
	uint8		scopes_len;		/* scopes: text[role_len ..) */
	char		text[CACHE_SESSION_TEXT];	/* not NUL-terminated */
} CacheSessionEntry;

typedef struct CacheMemberKey
{
	Oid			dbid;
	uint8		how;			/* 'u': tenant named by uuid, 's': by slug */
	uint8		len;			/* bytes of name used */
	uint16		pad;			/* zero */
	pg_uuid_t	user_id;
	char		name[CACHE_SLUG_MAX];	/* uuid bytes or slug, zero padded */
} CacheMemberKey;

typedef struct CacheMemberEntry
{
	CacheMemberKey key;			/* hash key: must be first */
	CacheHead	head;
	pg_uuid_t	tenant_id;
	uint8		role_len;
	char		role[CACHE_MEMBER_ROLE];	/* not NUL-terminated */
} CacheMemberEntry;

StaticAssertDecl(sizeof(CacheSessionEntry) == 160, "session entry is 160 bytes");
StaticAssertDecl(sizeof(CacheMemberEntry) == 160, "member entry is 160 bytes");

/* One partition of one table: its clock ring and counters. */
typedef struct CachePart
{
	uint32		count;			/* entries, in ring[0 .. count) */
	uint32		hand;			/* clock hand */
	uint64		evictions;		/* under the exclusive lock */
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;
	char		pad[PG_CACHE_LINE_SIZE - 32];	/* one cache line each */
} CachePart;

/* Everything in shared memory but the hash tables. */
typedef struct CacheShared
{
	pg_atomic_uint64 clock;		/* the generation clock, starts at 1 */
	uint32		nslots;			/* power of two */
	uint32		cap[CT_COUNT];	/* entries per partition */
	CachePart	parts[CT_COUNT][CACHE_PARTITIONS];
	CacheStandbyShared standby; /* cache_standby.c's */
	/* followed by the rings, gen[nslots + 1] and busy[nslots] */
} CacheShared;

/* Static description of the two tables. */
static const struct
{
	const char *name;
	Size		keysize;
	Size		entrysize;
	Size		headoff;
}			cache_tables[CT_COUNT] =
{
	{"authctx session cache", sizeof(CacheSessionKey),
	sizeof(CacheSessionEntry), offsetof(CacheSessionEntry, head)},
	{"authctx membership cache", sizeof(CacheMemberKey),
	sizeof(CacheMemberEntry), offsetof(CacheMemberEntry, head)},
};

/* Settings. */
int			authctx_cache_size = 100000;
static int	authctx_debug_cache_fill_lock = 0;

/* Shared state, attached in the postmaster and inherited. */
static CacheShared *cache_shared = NULL;
static HTAB *cache_htab[CT_COUNT];
static void **cache_ring[CT_COUNT];
pg_atomic_uint64 *authctx_cache_clock = NULL;
uint32		authctx_cache_nslots = 0;
pg_atomic_uint64 *authctx_cache_gen = NULL;
pg_atomic_uint32 *authctx_cache_busy = NULL;
CacheStandbyShared *authctx_cache_standby = NULL;
static LWLockPadded *cache_locks = NULL;

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* ---------------------------------------------------------------------
 * Sizing and startup
 * ---------------------------------------------------------------------
 */

/* Entries per partition of table t. */
static uint32
CachePartCap(CacheTableId t)
{
	int64		n = authctx_cache_size;

	if (t == CT_MEMBER)
		n = Max(n / 4, CACHE_PARTITIONS);
	return (uint32) ((n + CACHE_PARTITIONS - 1) / CACHE_PARTITIONS);
}

/*
 * Number of generation slots: a power of two near the cache size, at most
 * as many as there are wide keys.
 */
static uint32
CacheSlotCount(void)
{
	uint32		n = (uint32) Max(authctx_cache_size, 4096);

	return pg_nextpower2_32(Min(n, 1U << CACHE_WIDE_BITS));
}

/* Size of CacheShared with its rings and slot arrays. */
static Size
CacheSharedSize(void)
{
	Size		size = MAXALIGN(sizeof(CacheShared));

	for (int t = 0; t < CT_COUNT; t++)
		size = add_size(size, MAXALIGN(mul_size(mul_size(CachePartCap(t), CACHE_PARTITIONS),
												sizeof(void *))));
	size = add_size(size, mul_size(CacheSlotCount() + 1, sizeof(pg_atomic_uint64)));
	size = add_size(size, mul_size(CacheSlotCount(), sizeof(pg_atomic_uint32)));
	return size;
}

/* Total shared memory the cache asks for. */
static Size
CacheShmemSize(void)
{
	Size		size = CacheSharedSize();

	for (int t = 0; t < CT_COUNT; t++)
		size = add_size(size, hash_estimate_size(CachePartCap(t) * CACHE_PARTITIONS,
												 cache_tables[t].entrysize));
	return size;
}

/* Ask for shared memory and the lock tranche (shmem_request_hook). */
static void
CacheShmemRequest(void)
{
#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(CacheShmemSize());
	RequestNamedLWLockTranche(CACHE_TRANCHE, CT_COUNT * CACHE_PARTITIONS);
}

/* Create or attach the shared state (shmem_startup_hook). */
static void
CacheShmemStartup(void)
{
	bool		found;
	char	   *p;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	cache_shared = ShmemInitStruct("authctx cache", CacheSharedSize(), &found);
	p = (char *) cache_shared + MAXALIGN(sizeof(CacheShared));
	for (int t = 0; t < CT_COUNT; t++)
	{
		cache_ring[t] = (void **) p;
		p += MAXALIGN(mul_size(mul_size(CachePartCap(t), CACHE_PARTITIONS),
							   sizeof(void *)));
	}
	authctx_cache_gen = (pg_atomic_uint64 *) p;
	p += mul_size(CacheSlotCount() + 1, sizeof(pg_atomic_uint64));
	authctx_cache_busy = (pg_atomic_uint32 *) p;

	if (!found)
	{
		memset(cache_shared, 0, CacheSharedSize());
		pg_atomic_init_u64(&cache_shared->clock, 1);
		cache_shared->nslots = CacheSlotCount();
		for (int t = 0; t < CT_COUNT; t++)
		{
			cache_shared->cap[t] = CachePartCap(t);
			for (int i = 0; i < CACHE_PARTITIONS; i++)
			{
				pg_atomic_init_u64(&cache_shared->parts[t][i].hits, 0);
				pg_atomic_init_u64(&cache_shared->parts[t][i].misses, 0);
			}
		}
		for (uint32 i = 0; i < cache_shared->nslots; i++)
		{
			pg_atomic_init_u64(&authctx_cache_gen[i], 0);
			pg_atomic_init_u32(&authctx_cache_busy[i], 0);
		}
		pg_atomic_init_u64(&authctx_cache_gen[cache_shared->nslots], 0);
	}
	cache_locks = GetNamedLWLockTranche(CACHE_TRANCHE);
	authctx_cache_nslots = cache_shared->nslots;
	authctx_cache_clock = &cache_shared->clock;
	authctx_cache_standby = &cache_shared->standby;
	if (!found)
		CacheStandbyShmemInit();

	for (int t = 0; t < CT_COUNT; t++)
	{
		HASHCTL		info;
		long		n = (long) CachePartCap(t) * CACHE_PARTITIONS;

		memset(&info, 0, sizeof(info));
		info.keysize = cache_tables[t].keysize;
		info.entrysize = cache_tables[t].entrysize;
		info.num_partitions = CACHE_PARTITIONS;
		cache_htab[t] = ShmemInitHash(cache_tables[t].name, n, n, &info,
									  HASH_ELEM | HASH_BLOBS | HASH_PARTITION |
									  HASH_FIXED_SIZE);
	}

	LWLockRelease(AddinShmemInitLock);
}

/* Define the cache settings; when preloaded, ask for shared memory. */
void
CacheInit(void)
{
	DefineCustomIntVariable("authctx.debug_cache_fill_lock",
							"Testing only: advisory lock a cache fill waits for, between its table read and its insert; 0 means none.",
							NULL,
							&authctx_debug_cache_fill_lock,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	/*
	 * A PGC_POSTMASTER setting can only be created at postmaster start
	 * (define_custom_variable refuses it later), and only then does it mean
	 * anything: without preloading there is no cache.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("authctx.cache_size",
							"Sessions and API keys kept in the shared-memory cache; 0 disables it.",
							"Needs shared_preload_libraries = 'authctx'.  The membership cache holds a quarter as many entries.",
							&authctx_cache_size,
							100000, 0, 50000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	if (authctx_cache_size <= 0)
		return;

#ifdef AUTHCTX_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = CacheShmemRequest;
#else
	CacheShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = CacheShmemStartup;
	CacheStandbyInit();
}

/* ---------------------------------------------------------------------
 * Partitions: lookup, insert with eviction, removal
 * ---------------------------------------------------------------------
 */

static inline CacheHead *
CacheHeadOf(CacheTableId t, void *entry)
{
	return (CacheHead *) ((char *) entry + cache_tables[t].headoff);
}

static inline LWLock *
CacheLock(CacheTableId t, uint32 hash)
{
	return &cache_locks[t * CACHE_PARTITIONS + hash % CACHE_PARTITIONS].lock;
}

static inline CachePart *
CachePartOf(CacheTableId t, uint32 hash)
{
	return &cache_shared->parts[t][hash % CACHE_PARTITIONS];
}

static inline void **
CacheRingOf(CacheTableId t, uint32 hash)
{
	return cache_ring[t] + (Size) (hash % CACHE_PARTITIONS) * cache_shared->cap[t];
}

/* Remove an entry; the partition lock is held exclusively. */
static void
CacheRemoveLocked(CacheTableId t, uint32 hash, void *entry)
{
	CachePart  *part = CachePartOf(t, hash);
	void	  **ring = CacheRingOf(t, hash);
	uint32		idx = CacheHeadOf(t, entry)->ring;
	void	   *last;

	Assert(part->count > 0 && ring[idx] == entry);
	last = ring[--part->count];
	ring[idx] = last;
	CacheHeadOf(t, last)->ring = idx;
	ring[part->count] = NULL;
	hash_search_with_hash_value(cache_htab[t], entry, hash, HASH_REMOVE, NULL);
}

/* Evict one entry of a full partition (clock, second chance). */
static void
CacheEvictLocked(CacheTableId t, uint32 hash)
{
	CachePart  *part = CachePartOf(t, hash);
	void	  **ring = CacheRingOf(t, hash);

	for (;;)
	{
		void	   *victim;
		CacheHead  *head;

		if (part->hand >= part->count)
			part->hand = 0;
		victim = ring[part->hand];
		head = CacheHeadOf(t, victim);
		if (pg_atomic_read_u32(&head->usage) != 0)
		{
			pg_atomic_write_u32(&head->usage, 0);
			part->hand++;
			continue;
		}
		/* the victim's key hashes to this partition, not necessarily to hash */
		CacheRemoveLocked(t, get_hash_value(cache_htab[t], victim), victim);
		part->evictions++;
		return;
	}
}

/*
 * Find or make the entry for key; the partition lock is held exclusively.
 * Returns NULL if no element could be had (never expected).
 */
static void *
CacheEnterLocked(CacheTableId t, const void *key, uint32 hash)
{
	CachePart  *part = CachePartOf(t, hash);
	void	   *entry;
	bool		found;

	entry = hash_search_with_hash_value(cache_htab[t], key, hash, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;
	if (part->count >= cache_shared->cap[t])
		CacheEvictLocked(t, hash);
	entry = hash_search_with_hash_value(cache_htab[t], key, hash,
										HASH_ENTER_NULL, &found);
	if (entry == NULL)
		return NULL;
	CacheHeadOf(t, entry)->ring = part->count;
	pg_atomic_init_u32(&CacheHeadOf(t, entry)->usage, 0);
	CacheRingOf(t, hash)[part->count++] = entry;
	return entry;
}

/* Forget the entry for key, if any. */
static void
CacheForget(CacheTableId t, const void *key)
{
	uint32		hash = get_hash_value(cache_htab[t], key);
	void	   *entry;

	LWLockAcquire(CacheLock(t, hash), LW_EXCLUSIVE);
	entry = hash_search_with_hash_value(cache_htab[t], key, hash, HASH_FIND, NULL);
	if (entry != NULL)
		CacheRemoveLocked(t, hash, entry);
	LWLockRelease(CacheLock(t, hash));
}

/*
 * Testing only: wait for an advisory lock between the table read and the
 * insert of a fill, so that an isolation spec can commit a change there.
 */
static void
CacheFillBarrier(void)
{
	if (authctx_debug_cache_fill_lock != 0)
		DirectFunctionCall1(pg_advisory_xact_lock_shared_int8,
							Int64GetDatum((int64) authctx_debug_cache_fill_lock));
}

/* ---------------------------------------------------------------------
 * Sessions and API keys
 * ---------------------------------------------------------------------
 */

static void
CacheSessionKeyInit(CacheSessionKey *key, char kind, const pg_uuid_t *id)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->kind = kind;
	memcpy(&key->id, id, sizeof(pg_uuid_t));
}

/*
 * Look a session or API key up in the cache.  On a valid hit fill *rec as
 * SessionLookup would (member_known set) and return true.
 */
bool
CacheSessionGet(char kind, const pg_uuid_t *id, SessionRecord *rec)
{
	CacheSessionKey key;
	CacheSessionEntry *e;
	uint32		hash;
	bool		hit = false;

	if (!CacheReadable())
		return false;
	CacheSessionKeyInit(&key, kind, id);
	hash = get_hash_value(cache_htab[CT_SESSION], &key);
	memset(rec, 0, sizeof(*rec));

	LWLockAcquire(CacheLock(CT_SESSION, hash), LW_SHARED);
	e = hash_search_with_hash_value(cache_htab[CT_SESSION], &key, hash, HASH_FIND, NULL);
	if (e != NULL)
	{
		uint32		slots[3];

		slots[0] = CacheTokenSlot(kind, id);
		slots[1] = CacheUserSlot(&e->user_id);
		slots[2] = CacheDbSlot(CACHE_SALT_EPOCH);
		hit = CacheStampValid(e->head.stamp, slots, 3);
	}
	if (hit)
	{
		rec->kind = kind;
		memcpy(&rec->id, id, sizeof(pg_uuid_t));
		rec->user_id = e->user_id;
		rec->has_tenant = (e->flags & CE_HAS_TENANT) != 0;
		rec->tenant_id = e->tenant_id;
		rec->has_verifier = true;
		memcpy(rec->verifier, e->verifier, AUTHCTX_TOKEN_HASH_LEN);
		rec->expires_at = e->expires_at;
		rec->last_seen_at = (TimestampTz) pg_atomic_read_u64(&e->last_seen_at);
		rec->revoked = false;
		rec->user_disabled = false;
		rec->member_known = true;
		rec->is_member = (e->flags & CE_IS_MEMBER) != 0;
		memcpy(rec->role, e->text, e->role_len);
		rec->role[e->role_len] = '\0';
		memcpy(rec->scopes, e->text + e->role_len, e->scopes_len);
		rec->scopes[e->scopes_len] = '\0';
		if (pg_atomic_read_u32(&e->head.usage) == 0)
			pg_atomic_write_u32(&e->head.usage, 1);
	}
	LWLockRelease(CacheLock(CT_SESSION, hash));

	/*
	 * A standby cannot move an entry's last-seen time (CacheSessionSeen), but
	 * replays the primary's: an entry that looks idle-expired is read again
	 * from the tables, which decide.
	 */
	if (hit && RecoveryInProgress() && !SessionIsLive(rec, GetCurrentTimestamp()))
	{
		memset(rec, 0, sizeof(*rec));
		hit = false;
	}

	if (hit)
		pg_atomic_fetch_add_u64(&CachePartOf(CT_SESSION, hash)->hits, 1);
	else
		pg_atomic_fetch_add_u64(&CachePartOf(CT_SESSION, hash)->misses, 1);
	return hit;
}

/*
 * After a table lookup whose snapshot was taken after CacheStamp() returned
 * stamp: cache the record if it is valid now, else drop any entry for it.
 * rec is NULL when the lookup found nothing.
 */
void
CacheSessionPut(char kind, const pg_uuid_t *id, const SessionRecord *rec,
				uint64 stamp)
{
	CacheSessionKey key;
	CacheSessionEntry *e;
	uint32		hash;
	size_t		role_len = 0;
	size_t		scopes_len = 0;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz last_seen;
	bool		cacheable;

	if (cache_shared == NULL)
		return;
	CacheSessionKeyInit(&key, kind, id);

	/* only a live record is kept: the liveness rule is session.c's */
	cacheable = stamp != 0 && rec != NULL && rec->member_known &&
		SessionIsLive(rec, now);
	if (cacheable)
	{
		role_len = rec->is_member ? strlen(rec->role) : 0;
		scopes_len = strlen(rec->scopes);
		cacheable = role_len + scopes_len <= CACHE_SESSION_TEXT;
	}
	if (!cacheable)
	{
		/*
		 * Drop the entry the tables no longer support.  Only for hygiene
		 * (stale entries are refused anyway), and not on what this
		 * transaction's own uncommitted changes say (stamp 0).
		 */
		if (stamp != 0)
			CacheForget(CT_SESSION, &key);
		return;
	}

	CacheFillBarrier();

	hash = get_hash_value(cache_htab[CT_SESSION], &key);
	LWLockAcquire(CacheLock(CT_SESSION, hash), LW_EXCLUSIVE);

	/*
	 * An entry's last-seen time may be newer than the table's (a noted use
	 * the writer has not written yet): the idle rule needs it, keep it.
	 */
	e = hash_search_with_hash_value(cache_htab[CT_SESSION], &key, hash, HASH_FIND, NULL);
	last_seen = rec->last_seen_at;
	if (e != NULL)
		last_seen = SeenLater(last_seen,
							  (TimestampTz) pg_atomic_read_u64(&e->last_seen_at));
	e = CacheEnterLocked(CT_SESSION, &key, hash);
	if (e != NULL)
	{
		e->head.stamp = stamp;
		e->user_id = rec->user_id;
		e->flags = (rec->has_tenant ? CE_HAS_TENANT : 0) |
			(rec->is_member ? CE_IS_MEMBER : 0);
		if (rec->has_tenant)
			e->tenant_id = rec->tenant_id;
		else
			memset(&e->tenant_id, 0, sizeof(pg_uuid_t));
		memcpy(e->verifier, rec->verifier, AUTHCTX_TOKEN_HASH_LEN);
		e->expires_at = rec->expires_at;
		pg_atomic_write_u64(&e->last_seen_at, (uint64) last_seen);
		e->role_len = (uint8) role_len;
		e->scopes_len = (uint8) scopes_len;
		memset(e->text, 0, CACHE_SESSION_TEXT);
		memcpy(e->text, rec->role, role_len);
		memcpy(e->text + role_len, rec->scopes, scopes_len);
	}
	LWLockRelease(CacheLock(CT_SESSION, hash));
}

/*
 * After a successful validation that is due a last-seen note (at most once
 * per SessionSeenInterval()): move the entry's last-seen time to now.
 * False when another backend moved it first, and so noted it already; true
 * otherwise (moved here, or the session is not cached).  No table is
 * written.
 */
bool
CacheSessionSeen(const SessionRecord *rec, TimestampTz now)
{
	CacheSessionKey key;
	CacheSessionEntry *e;
	uint32		hash;
	bool		moved = true;

	if (cache_shared == NULL || RecoveryInProgress())
		return true;

	CacheSessionKeyInit(&key, rec->kind, &rec->id);
	hash = get_hash_value(cache_htab[CT_SESSION], &key);
	LWLockAcquire(CacheLock(CT_SESSION, hash), LW_SHARED);
	e = hash_search_with_hash_value(cache_htab[CT_SESSION], &key, hash, HASH_FIND, NULL);
	if (e != NULL)
	{
		uint64		expected = (uint64) rec->last_seen_at;

		/*
		 * A time newer than the one we read was put there by another
		 * backend's note.  An older one is a refill from the table since
		 * our read: replace it too.
		 */
		while (!pg_atomic_compare_exchange_u64(&e->last_seen_at, &expected, (uint64) now))
		{
			if ((TimestampTz) expected > rec->last_seen_at)
			{
				moved = false;
				break;
			}
		}
	}
	LWLockRelease(CacheLock(CT_SESSION, hash));
	return moved;
}

/* ---------------------------------------------------------------------
 * Memberships, for auth_begin(token, tenant)
 * ---------------------------------------------------------------------
 */

/* Build the key; false if the name cannot be a cache key (too long). */
static bool
CacheMemberKeyInit(CacheMemberKey *key, const pg_uuid_t *user_id,
				   const pg_uuid_t *tenant_uuid, const char *slug)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	memcpy(&key->user_id, user_id, sizeof(pg_uuid_t));
	if (tenant_uuid != NULL)
	{
		key->how = 'u';
		key->len = UUID_LEN;
		memcpy(key->name, tenant_uuid->data, UUID_LEN);
		return true;
	}
	else
	{
		size_t		len = strlen(slug);

		if (len == 0 || len > CACHE_SLUG_MAX)
			return false;
		key->how = 's';
		key->len = (uint8) len;
		memcpy(key->name, slug, len);
		return true;
	}
}

/*
 * The user's role in the tenant named by tenant_uuid or slug, from the
 * cache.  true on a valid hit (the user is a member).
 */
bool
CacheMemberGet(const pg_uuid_t *user_id, const pg_uuid_t *tenant_uuid,
			   const char *slug, pg_uuid_t *tenant_id, char *role)
{
	CacheMemberKey key;
	CacheMemberEntry *e;
	uint32		hash;
	bool		hit = false;

	if (!CacheReadable() || !CacheMemberKeyInit(&key, user_id, tenant_uuid, slug))
		return false;
	hash = get_hash_value(cache_htab[CT_MEMBER], &key);

	LWLockAcquire(CacheLock(CT_MEMBER, hash), LW_SHARED);
	e = hash_search_with_hash_value(cache_htab[CT_MEMBER], &key, hash, HASH_FIND, NULL);
	if (e != NULL)
	{
		uint32		slots[3];

		slots[0] = CacheUserSlot(user_id);
		slots[1] = CacheDbSlot(CACHE_SALT_EPOCH);
		slots[2] = CacheDbSlot(CACHE_SALT_TENANT);
		hit = CacheStampValid(e->head.stamp, slots, 3);
	}
	if (hit)
	{
		*tenant_id = e->tenant_id;
		memcpy(role, e->role, e->role_len);
		role[e->role_len] = '\0';
		if (pg_atomic_read_u32(&e->head.usage) == 0)
			pg_atomic_write_u32(&e->head.usage, 1);
	}
	LWLockRelease(CacheLock(CT_MEMBER, hash));

	if (hit)
		pg_atomic_fetch_add_u64(&CachePartOf(CT_MEMBER, hash)->hits, 1);
	else
		pg_atomic_fetch_add_u64(&CachePartOf(CT_MEMBER, hash)->misses, 1);
	return hit;
}

/*
 * Cache a membership read from the tables with a snapshot taken after
 * CacheStamp() returned stamp.
 */
void
CacheMemberPut(const pg_uuid_t *user_id, const pg_uuid_t *tenant_uuid,
			   const char *slug, const pg_uuid_t *tenant_id, const char *role,
			   uint64 stamp)
{
	CacheMemberKey key;
	CacheMemberEntry *e;
	uint32		hash;
	size_t		role_len = strlen(role);

	if (stamp == 0 || cache_shared == NULL || role_len > CACHE_MEMBER_ROLE ||
		!CacheMemberKeyInit(&key, user_id, tenant_uuid, slug))
		return;

	CacheFillBarrier();

	hash = get_hash_value(cache_htab[CT_MEMBER], &key);
	LWLockAcquire(CacheLock(CT_MEMBER, hash), LW_EXCLUSIVE);
	e = CacheEnterLocked(CT_MEMBER, &key, hash);
	if (e != NULL)
	{
		e->head.stamp = stamp;
		e->tenant_id = *tenant_id;
		e->role_len = (uint8) role_len;
		memset(e->role, 0, CACHE_MEMBER_ROLE);
		memcpy(e->role, role, role_len);
	}
	LWLockRelease(CacheLock(CT_MEMBER, hash));
}

/*
 * authctx._cache_stats(): cluster-wide counters, for tests and tuning.
 * All zero when the cache is not in shared memory.
 */
Datum
authctx_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false};
	int64		hits[CT_COUNT] = {0};
	int64		misses[CT_COUNT] = {0};
	int64		entries[CT_COUNT] = {0};
	int64		evictions = 0;
	int64		capacity = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (cache_shared != NULL)
	{
		for (int t = 0; t < CT_COUNT; t++)
		{
			for (int i = 0; i < CACHE_PARTITIONS; i++)
			{
				CachePart  *part = &cache_shared->parts[t][i];
				LWLock	   *lock = &cache_locks[t * CACHE_PARTITIONS + i].lock;

				LWLockAcquire(lock, LW_SHARED);
				entries[t] += part->count;
				evictions += part->evictions;
				LWLockRelease(lock);
				hits[t] += pg_atomic_read_u64(&part->hits);
				misses[t] += pg_atomic_read_u64(&part->misses);
			}
		}
		capacity = (int64) cache_shared->cap[CT_SESSION] * CACHE_PARTITIONS;
	}
	values[0] = Int64GetDatum(hits[CT_SESSION]);
	values[1] = Int64GetDatum(misses[CT_SESSION]);
	values[2] = Int64GetDatum(entries[CT_SESSION]);
	values[3] = Int64GetDatum(hits[CT_MEMBER]);
	values[4] = Int64GetDatum(misses[CT_MEMBER]);
	values[5] = Int64GetDatum(entries[CT_MEMBER]);
	values[6] = Int64GetDatum(evictions);
	values[7] = Int64GetDatum(capacity);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
