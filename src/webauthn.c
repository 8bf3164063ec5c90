/*-------------------------------------------------------------------------
 *
 * webauthn.c
 *		(stub) the webauthn module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "authctx.h"

/* Define this module's settings and hooks. */
void
WebauthnInit(void)
{
}
