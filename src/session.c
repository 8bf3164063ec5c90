/*-------------------------------------------------------------------------
 *
 * session.c
 *		Session settings and the request-path lookup of sessions and keys.
 *
 * Sessions, refresh tokens and API keys are managed by SQL functions
 * (src/sql/50_session.sql).  This file holds what the hot path needs: the
 * lifetime settings and SessionLookup(), which finds a session or API key by
 * its public id and checks it (see request.c for the order of checks).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "authctx.h"

/* Lifetime settings, in seconds (milliseconds for the grace). */
int			authctx_session_lifetime = 86400;
int			authctx_session_idle_timeout = 3600;
int			authctx_refresh_lifetime = 30 * 86400;
int			authctx_refresh_reuse_grace = 0;
int			authctx_last_seen_interval = 60;
int			authctx_lockout_threshold = 5;
int			authctx_lockout_base_delay = 30;
int			authctx_lockout_max_delay = 900;

/* Define the session settings. */
void
SessionInit(void)
{
	DefineCustomIntVariable("authctx.session_lifetime",
							"Absolute lifetime of a session.",
							NULL,
							&authctx_session_lifetime,
							86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.session_idle_timeout",
							"A session unused for this long expires; 0 disables the idle timeout.",
							NULL,
							&authctx_session_idle_timeout,
							3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.refresh_lifetime",
							"Lifetime of a refresh token.",
							NULL,
							&authctx_refresh_lifetime,
							30 * 86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.refresh_reuse_grace",
							"Window in which a spent refresh token may be presented again without revoking its family.",
							"0 (the default) means a refresh token works exactly once.",
							&authctx_refresh_reuse_grace,
							0, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.last_seen_interval",
							"Granularity of last-seen and last-used times; they are written off the request path at most this often per session.",
							NULL,
							&authctx_last_seen_interval,
							60, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_threshold",
							"Consecutive failed logins after which an account is locked for a while.",
							NULL,
							&authctx_lockout_threshold,
							5, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_base_delay",
							"Lockout after the threshold is reached; doubles with each further failure.",
							NULL,
							&authctx_lockout_base_delay,
							30, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("authctx.lockout_max_delay",
							"Longest lockout, however many failures.",
							NULL,
							&authctx_lockout_max_delay,
							900, 1, 86400 * 7,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
}
