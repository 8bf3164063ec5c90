-- revoke_auth: the authenticating side of the revocation test.  Half the
-- requests present a random live token (never revoked), half a token of
-- the revocation pool near the revoker's frontier (bench.auth_probe), so
-- that authentications race the revocations.  Probes that authenticate a
-- token whose revocation had begun are logged for the stale-accept check.
-- The same script runs with no revoker (the baseline) and with a revoker
-- at 100 and 1,000 revocations a second.
-- Four requests per pgbench transaction, in one pipeline; each is BEGIN,
-- bench.auth_probe, COMMIT.
-- Variables: ntok.
\set r1 random(1, :ntok)
\set k1 random(-50, 50)
\set p1 random(0, 1)
\set r2 random(1, :ntok)
\set k2 random(-50, 50)
\set p2 random(0, 1)
\set r3 random(1, :ntok)
\set k3 random(-50, 50)
\set p3 random(0, 1)
\set r4 random(1, :ntok)
\set k4 random(-50, 50)
\set p4 random(0, 1)
\startpipeline
BEGIN;
SELECT bench.auth_probe(:r1, :k1, :p1 = 1);
COMMIT;
BEGIN;
SELECT bench.auth_probe(:r2, :k2, :p2 = 1);
COMMIT;
BEGIN;
SELECT bench.auth_probe(:r3, :k3, :p3 = 1);
COMMIT;
BEGIN;
SELECT bench.auth_probe(:r4, :k4, :p4 = 1);
COMMIT;
\endpipeline
