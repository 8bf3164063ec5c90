/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Differences between the PostgreSQL versions authctx builds against.
 *
 * authctx supports PostgreSQL 15: it is the only version built and tested
 * here (CI and make test), and the tests use 15's names (force_parallel_mode
 * in sql/parallel.sql became debug_parallel_query in 16).  The branches
 * below for other versions are kept so that a port starts from them, but
 * they are not tested and make no promise.  Every version test lives here
 * so that the modules read as plain code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHCTX_COMPAT_H
#define AUTHCTX_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 130000
#error "authctx requires PostgreSQL 13 or later"
#endif

/* MarkGUCPrefixReserved appeared in 15; older servers only warn. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* shmem_request_hook appeared in 15; before it, request in _PG_init. */
#if PG_VERSION_NUM >= 150000
#define AUTHCTX_HAS_SHMEM_REQUEST_HOOK 1
#endif

/* ProcessUtility_hook gained readOnlyTree in 14. */
#if PG_VERSION_NUM >= 140000
#define AUTHCTX_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define AUTHCTX_UTILITY_PASS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define AUTHCTX_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define AUTHCTX_UTILITY_PASS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

/* The backend's local transaction id moved into MyProc->vxid in 17. */
#if PG_VERSION_NUM >= 170000
#define AuthctxMyLxid()	(MyProc->vxid.lxid)
#else
#define AuthctxMyLxid()	(MyProc->lxid)
#endif

/* Soft input errors (ereturn / escontext) appeared in 16. */
#if PG_VERSION_NUM >= 160000
#define AUTHCTX_HAS_SOFT_ERRORS 1
#include "nodes/miscnodes.h"
#define authctx_ereturn(escontext, dummy, ...) ereturn(escontext, dummy, __VA_ARGS__)
#else
#define authctx_ereturn(escontext, dummy, ...) \
	do { ereport(ERROR, __VA_ARGS__); return dummy; } while (0)
#endif

/* TimestampTz helpers (GetCurrentTimestamp, DT_NOEND...), used everywhere. */
#include "utils/timestamp.h"

#endif							/* AUTHCTX_COMPAT_H */
