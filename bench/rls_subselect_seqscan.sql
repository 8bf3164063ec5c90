-- rls_subselect_seqscan: for comparison, not a target.  items_rls_sub has
-- the policy tenant_id = (SELECT authctx.tenant_id()): the accessor runs
-- once per query (an InitPlan), the comparison once per row.
-- The per-row worst case: a sequential scan of all 200,000 rows (index and
-- bitmap scans are switched off after auth_begin, for this transaction
-- only), keeping the 2,000 rows of tenant 1.  Not pipelined: one query
-- takes milliseconds, the round trip is noise.
-- Variables: ntok, ntenants, tid (the uuid of tenant 1).
\set r 1 + :ntenants * random(0, :ntok / :ntenants - 1)
BEGIN;
SELECT auth_begin(b.t) FROM bench.tokens b WHERE b.i = :r;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT count(*), sum(amount) FROM public.items_rls_sub;
COMMIT;
