-- reject_wrong: tokens whose id names a live session but whose secret is
-- wrong (the decoy session rows carry another token's verifier).
-- Four requests per pgbench transaction, in one pipeline; each request is
-- BEGIN, bench.try_auth(token), COMMIT.  try_auth wraps auth_begin in a
-- plpgsql exception block so that a rejection (28000) does not end the
-- pgbench client; the wrapper costs the same in both variants
-- (reject_unknown, reject_wrong).
-- Variables: ntok (tokens drawn uniformly from 1..ntok).
\set r1 random(1, :ntok)
\set r2 random(1, :ntok)
\set r3 random(1, :ntok)
\set r4 random(1, :ntok)
\startpipeline
BEGIN;
SELECT bench.try_auth(b.t) FROM bench.wrong b WHERE b.i = :r1;
COMMIT;
BEGIN;
SELECT bench.try_auth(b.t) FROM bench.wrong b WHERE b.i = :r2;
COMMIT;
BEGIN;
SELECT bench.try_auth(b.t) FROM bench.wrong b WHERE b.i = :r3;
COMMIT;
BEGIN;
SELECT bench.try_auth(b.t) FROM bench.wrong b WHERE b.i = :r4;
COMMIT;
\endpipeline
