-- rls_query: items_rls is isolated with authctx.enable_tenant_isolation;
-- the policy adds tenant_id = authctx.tenant_id().
-- Four requests per pgbench transaction, in one pipeline; each request is
-- BEGIN, auth_begin, one query on the tenant's rows (about 20 of 200,000,
-- found through the (tenant_id, bucket) index), COMMIT.  rls_query and
-- plain_query differ only in how the tenant filter gets there.
-- Variables: ntok, ntenants (session i belongs to tenant 1 + (i-1) % ntenants).
\set r1 random(1, :ntok)
\set b1 random(0, 99)
\set r2 random(1, :ntok)
\set b2 random(0, 99)
\set r3 random(1, :ntok)
\set b3 random(0, 99)
\set r4 random(1, :ntok)
\set b4 random(0, 99)
\startpipeline
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r1;
SELECT count(*), sum(amount) FROM public.items_rls WHERE bucket = :b1;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r2;
SELECT count(*), sum(amount) FROM public.items_rls WHERE bucket = :b2;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r3;
SELECT count(*), sum(amount) FROM public.items_rls WHERE bucket = :b3;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r4;
SELECT count(*), sum(amount) FROM public.items_rls WHERE bucket = :b4;
COMMIT;
\endpipeline
