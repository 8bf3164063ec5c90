-- ---------------------------------------------------------------------------
-- 99 privileges sweep: whatever a module file forgot, PUBLIC ends with
-- EXECUTE on the accessors only and no privilege on any table.
-- ---------------------------------------------------------------------------
DO $sweep$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::regclass
       AND d.objid OPERATOR(pg_catalog.=) p.oid
       AND d.deptype OPERATOR(pg_catalog.=) 'e'
      JOIN pg_catalog.pg_extension e
        ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'authctx'
     WHERE p.proname NOT IN ('user_id', 'tenant_id', 'role', 'session_id', 'current',
                             'has_role', 'has_scope', 'is_authenticated', 'amr', 'claims',
                             'token_in', 'token_out', 'token_recv', 'token_send')
  LOOP
    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$sweep$;
REVOKE ALL ON ALL TABLES IN SCHEMA authctx FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA authctx FROM PUBLIC;
