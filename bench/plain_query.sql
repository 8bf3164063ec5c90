-- plain_query: items_plain has no RLS; the application passes the tenant
-- id it knows as a parameter (bench.tenant_uuid builds it from its number).
-- Four requests per pgbench transaction, in one pipeline; each request is
-- BEGIN, auth_begin, one query on the tenant's rows (about 20 of 200,000,
-- found through the (tenant_id, bucket) index), COMMIT.  rls_query and
-- plain_query differ only in how the tenant filter gets there.
-- Variables: ntok, ntenants (session i belongs to tenant 1 + (i-1) % ntenants).
\set r1 random(1, :ntok)
\set b1 random(0, 99)
\set tn1 1 + (:r1 - 1) % :ntenants
\set r2 random(1, :ntok)
\set b2 random(0, 99)
\set tn2 1 + (:r2 - 1) % :ntenants
\set r3 random(1, :ntok)
\set b3 random(0, 99)
\set tn3 1 + (:r3 - 1) % :ntenants
\set r4 random(1, :ntok)
\set b4 random(0, 99)
\set tn4 1 + (:r4 - 1) % :ntenants
\startpipeline
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r1;
SELECT count(*), sum(amount) FROM public.items_plain
 WHERE tenant_id = bench.tenant_uuid(:tn1) AND bucket = :b1;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r2;
SELECT count(*), sum(amount) FROM public.items_plain
 WHERE tenant_id = bench.tenant_uuid(:tn2) AND bucket = :b2;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r3;
SELECT count(*), sum(amount) FROM public.items_plain
 WHERE tenant_id = bench.tenant_uuid(:tn3) AND bucket = :b3;
COMMIT;
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r4;
SELECT count(*), sum(amount) FROM public.items_plain
 WHERE tenant_id = bench.tenant_uuid(:tn4) AND bucket = :b4;
COMMIT;
\endpipeline
