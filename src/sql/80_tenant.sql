-- ---------------------------------------------------------------------------
-- 80 tenant context: isolation helpers, lint, admin bypass.
--
-- enable_tenant_isolation(tbl, col) installs, on a table its caller owns:
--   ENABLE + FORCE row level security;
--   policy authctx_tenant_isolation, FOR ALL TO PUBLIC,
--     USING and WITH CHECK (col = (SELECT authctx.tenant_id()));
--   policy authctx_admin_bypass, FOR ALL TO authctx_admin,
--     USING and WITH CHECK (authctx.admin_bypass());
--   column default authctx.tenant_id(); an index on col if none leads with it;
--   the same on each existing partition of a partitioned table.
-- The bypass is a second permissive policy (policies are ORed) rather than
-- an OR inside the first: for every role outside authctx_admin the qual stays
-- "col = (SELECT authctx.tenant_id())", which the planner can answer with
-- the index.  The sub-select makes tenant_id() an InitPlan, evaluated once
-- per query instead of once per row (same predicate; a seq scan under the
-- policy then costs what the same scan with a constant costs).
-- What was there before (RLS flags, old default, whether we made the index)
-- is kept as JSON in the comment of the isolation policy, so
-- disable_tenant_isolation undoes exactly what enable did.
--
-- These functions run as the caller (SECURITY INVOKER): only the table's
-- owner can change its policies.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.enable_tenant_isolation(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  rel       pg_catalog.pg_class%ROWTYPE;
  coltype   regtype;
  state     jsonb;
  olddef    text;
  idxname   text;
BEGIN
  IF tbl IS NULL OR tenant_column IS NULL THEN
    RAISE EXCEPTION 'table and tenant column must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) tbl;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = '42809';
  END IF;
  SELECT a.atttypid::regtype INTO coltype
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column
     AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
  IF coltype IS NULL THEN
    RAISE EXCEPTION 'column "%" of table "%" does not exist', tenant_column, tbl
      USING ERRCODE = '42703';
  END IF;
  IF coltype OPERATOR(pg_catalog.<>) 'uuid'::regtype THEN
    RAISE EXCEPTION 'tenant column "%" of table "%" must be of type uuid, not %', tenant_column, tbl, coltype
      USING ERRCODE = '42804';
  END IF;

  -- Already isolated?  Keep the original "before" state; only re-apply.
  SELECT pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb INTO state
    FROM pg_catalog.pg_policy p
   WHERE p.polrelid OPERATOR(pg_catalog.=) tbl AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation';
  IF state IS NOT NULL AND state->>'column' OPERATOR(pg_catalog.<>) tenant_column::text THEN
    RAISE EXCEPTION 'table "%" is already isolated on column "%"', tbl, state->>'column'
      USING ERRCODE = '55000', HINT = 'Call authctx.disable_tenant_isolation first.';
  END IF;

  IF state IS NULL THEN
    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO olddef
      FROM pg_catalog.pg_attrdef d
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
     WHERE d.adrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column;
    state := pg_catalog.jsonb_build_object(
      'column', tenant_column,
      'rls_enabled', rel.relrowsecurity,
      'rls_forced', rel.relforcerowsecurity,
      'default', olddef,
      'index', NULL);
  END IF;

  EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
               WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
                 AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation') THEN
    EXECUTE pg_catalog.format('DROP POLICY authctx_tenant_isolation ON %s', tbl);
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
              WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
                AND p.polname OPERATOR(pg_catalog.=) 'authctx_admin_bypass') THEN
    EXECUTE pg_catalog.format('DROP POLICY authctx_admin_bypass ON %s', tbl);
  END IF;
  EXECUTE pg_catalog.format(
    'CREATE POLICY authctx_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
    'USING (%I OPERATOR(pg_catalog.=) (SELECT authctx.tenant_id())) '
    'WITH CHECK (%I OPERATOR(pg_catalog.=) (SELECT authctx.tenant_id()))', tbl, tenant_column, tenant_column);
  EXECUTE pg_catalog.format(
    'CREATE POLICY authctx_admin_bypass ON %s AS PERMISSIVE FOR ALL TO authctx_admin '
    'USING (authctx.admin_bypass()) WITH CHECK (authctx.admin_bypass())', tbl);
  EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT authctx.tenant_id()',
                            tbl, tenant_column);

  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                  JOIN pg_catalog.pg_attribute a
                    ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                 WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_column) THEN
    idxname := pg_catalog.left(rel.relname || '_' || tenant_column, 50) || '_authctx_idx';
    EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (%I)', idxname, tbl, tenant_column);
    state := pg_catalog.jsonb_set(state, '{index}', pg_catalog.to_jsonb(idxname));
  END IF;

  EXECUTE pg_catalog.format('COMMENT ON POLICY authctx_tenant_isolation ON %s IS %L', tbl, state::text);

  -- A partition read directly bypasses its parent's policies: cover the
  -- existing partitions too (partitions created later need their own call;
  -- isolation_report lists them).
  PERFORM authctx.enable_tenant_isolation(i.inhrelid::regclass, tenant_column)
     FROM pg_catalog.pg_inherits i
    WHERE i.inhparent OPERATOR(pg_catalog.=) tbl;
END
$$;
COMMENT ON FUNCTION authctx.enable_tenant_isolation(regclass, name) IS
  'enable and force RLS with a tenant policy, column default and index; idempotent';

CREATE FUNCTION authctx.disable_tenant_isolation(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  state jsonb;
  nsp   name;
  part  regclass;
BEGIN
  SELECT pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb INTO state
    FROM pg_catalog.pg_policy p
   WHERE p.polrelid OPERATOR(pg_catalog.=) tbl AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation';
  IF state IS NULL THEN
    RAISE EXCEPTION 'table "%" is not isolated by authctx', tbl USING ERRCODE = '55000';
  END IF;

  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_tenant_isolation ON %s', tbl);
  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_admin_bypass ON %s', tbl);
  IF state->>'default' IS NULL THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, state->>'column');
  ELSE
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s',
                              tbl, state->>'column', state->>'default');
  END IF;
  IF NOT (state->>'rls_forced')::boolean THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', tbl);
  END IF;
  IF NOT (state->>'rls_enabled')::boolean THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
  END IF;
  IF state->>'index' IS NOT NULL THEN
    SELECT c.relnamespace::regnamespace::name INTO nsp FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) tbl;
    EXECUTE pg_catalog.format('DROP INDEX IF EXISTS %I.%I', nsp, state->>'index');
  END IF;

  -- partitions isolated by authctx are released too
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
     WHERE i.inhparent OPERATOR(pg_catalog.=) tbl
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) i.inhrelid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation')
  LOOP
    PERFORM authctx.disable_tenant_isolation(part);
  END LOOP;
END
$$;
COMMENT ON FUNCTION authctx.disable_tenant_isolation(regclass) IS
  'undo exactly what enable_tenant_isolation did';

CREATE FUNCTION authctx.isolation_report()
RETURNS TABLE (table_name regclass, tenant_column name, rls_enabled boolean,
               rls_forced boolean, has_policy boolean, has_index boolean, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH candidates AS (
    SELECT c.oid AS relid, c.relrowsecurity, c.relforcerowsecurity,
           COALESCE(
             (SELECT (pg_catalog.obj_description(p.oid, 'pg_policy')::jsonb)->>'column'
                FROM pg_catalog.pg_policy p
               WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                 AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'),
             'tenant_id')::name AS col,
           EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation') AS isolated
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'authctx')
       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  ), checked AS (
    SELECT c.relid, c.col, c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polrelid OPERATOR(pg_catalog.=) c.relid
                      AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'
                      AND p.polcmd OPERATOR(pg_catalog.=) '*') AS has_policy,
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a
                       ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                    WHERE i.indrelid OPERATOR(pg_catalog.=) c.relid AND a.attname OPERATOR(pg_catalog.=) c.col) AS has_index
      FROM candidates c
     WHERE c.isolated
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) c.relid AND a.attname OPERATOR(pg_catalog.=) 'tenant_id'
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  )
  SELECT k.relid::regclass, k.col, k.relrowsecurity, k.relforcerowsecurity, k.has_policy, k.has_index,
         NULLIF(pg_catalog.concat_ws('; ',
           CASE WHEN NOT k.relrowsecurity THEN 'row level security is not enabled' END,
           CASE WHEN NOT k.relforcerowsecurity THEN 'row level security is not forced (the owner bypasses it)' END,
           CASE WHEN NOT k.has_policy THEN 'no authctx tenant isolation policy' END,
           CASE WHEN NOT k.has_index THEN 'no index leading with the tenant column' END), '')
    FROM checked k
   ORDER BY k.relid::regclass::text;
$$;
COMMENT ON FUNCTION authctx.isolation_report() IS
  'one row per table with a tenant_id column or authctx isolation, and what is wrong with it';

CREATE FUNCTION authctx.admin_begin(reason text) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_admin_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authctx.admin_begin(text) IS
  'audited bypass of tenant isolation for this transaction; members of authctx_admin only';

REVOKE ALL ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report(),
  authctx.admin_begin(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report() TO authctx_manager;
GRANT EXECUTE ON FUNCTION authctx.admin_begin(text) TO authctx_admin;
