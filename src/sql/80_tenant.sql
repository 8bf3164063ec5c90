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
--
-- What was there before (RLS flags, the column's old default, the index
-- enable made) is kept in authctx.isolated_tables, so that
-- disable_tenant_isolation undoes exactly what enable did.  No role may
-- write that table.  Rows go in and out through _isolation_save and
-- _isolation_forget (C, tenant.c), which check that the calling role has
-- the privileges of the table's owner and then call the SECURITY DEFINER
-- functions _isolation_save_unchecked / _isolation_forget_unchecked (no
-- EXECUTE grant: fmgr calls them, the executor never does).  The old default
-- is read there, from the catalog, with pg_get_expr under the pinned
-- search_path (every name outside pg_catalog comes out qualified); it is
-- never taken from the caller, nor from anything another role can write,
-- and disable restores it in parentheses.  Both ends run with
-- standard_conforming_strings = on: pg_get_expr writes string literals for
-- the setting in force, and a literal printed with it on but parsed with it
-- off ends at a backslash, so that the rest of the owner's literal would
-- run as SQL with the rights of disable's caller.  (0.1.0 kept this state as JSON
-- in the policy's COMMENT, which the table's owner can rewrite: a DBA who
-- called disable then ran the owner's text as SQL.)
-- A row counts only while its table carries the authctx_tenant_isolation
-- policy (_isolation_state), and rows of relations that no longer exist are
-- purged by each save and forget, so a table that gets a dropped table's
-- OID inherits nothing (unless its owner gives it a policy of that name by
-- hand before the next purge; disable then acts on that owner's own table
-- alone, runs nothing, and drops only an index of that table).  pg_dump
-- keeps the rows (pg_extension_config_dump): relid dumps as the table's
-- qualified name; the index is kept by name (it lives in the table's
-- schema), because indexes are restored after the data.
--
-- isolation_report lints the tables (grants of TRUNCATE, TRIGGER and
-- REFERENCES to roles other than the owner included: row level security
-- limits none of them; and foreign keys to an isolated table that do not
-- pair the tenant columns, which PostgreSQL checks without row level
-- security); security_report lints what could stand in for auth_begin and
-- auth_end (see its comment).
--
-- These functions run as the caller (SECURITY INVOKER): only the table's
-- owner can change its policies.
-- ---------------------------------------------------------------------------

CREATE TABLE authctx.isolated_tables (
  relid            regclass PRIMARY KEY,
  tenant_column    name NOT NULL,
  rls_enabled      boolean NOT NULL,
  rls_forced       boolean NOT NULL,
  default_known    boolean NOT NULL,
  previous_default text,
  created_index    name,
  isolated_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  CONSTRAINT isolated_tables_default_check CHECK (default_known OR previous_default IS NULL)
);
COMMENT ON TABLE authctx.isolated_tables IS
  'tables isolated by enable_tenant_isolation, and what disable_tenant_isolation restores; written only through _isolation_save and _isolation_forget';
COMMENT ON COLUMN authctx.isolated_tables.previous_default IS
  'the tenant column''s default before isolation, as pg_get_expr printed it from the catalog; NULL: none (or unknown)';
COMMENT ON COLUMN authctx.isolated_tables.default_known IS
  'false when the default before isolation is unknown (a 0.1.0 record not safe to restore): disable then drops the default';
COMMENT ON COLUMN authctx.isolated_tables.created_index IS
  'the index enable_tenant_isolation created (in the table''s schema), dropped by disable; NULL: none';
SELECT pg_catalog.pg_extension_config_dump('authctx.isolated_tables', '');

CREATE FUNCTION authctx._isolation_qual(col name) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.format('(%I = ( SELECT authctx.tenant_id() AS tenant_id))', col)
$$;
COMMENT ON FUNCTION authctx._isolation_qual(name) IS
  'the isolation policy''s expression on column col as pg_get_expr prints it under the pinned search_path: how an intact policy is recognised';

CREATE FUNCTION authctx._isolation_index(tbl regclass, col name, idx name)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.indexrelid::regclass
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
    JOIN pg_catalog.pg_attribute a
      ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
   WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
     AND (idx IS NULL OR ic.relname OPERATOR(pg_catalog.=) idx)
   ORDER BY i.indexrelid
   LIMIT 1
$$;
COMMENT ON FUNCTION authctx._isolation_index(regclass, name, name) IS
  'an index of tbl whose first column is col (the one named idx, when idx is not NULL), or NULL';

CREATE FUNCTION authctx._isolation_state()
RETURNS SETOF authctx.isolated_tables
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.* FROM authctx.isolated_tables s
   WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                  WHERE p.polrelid OPERATOR(pg_catalog.=) s.relid
                    AND p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation')
$$;
COMMENT ON FUNCTION authctx._isolation_state() IS
  'the saved state of the tables that carry the authctx_tenant_isolation policy (a row without the policy counts for nothing)';

CREATE FUNCTION authctx._isolation_save_unchecked(tbl regclass, col name, idx name)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
DECLARE
  colnum smallint;
  saved  authctx.isolated_tables;
BEGIN
  -- rows of relations that no longer exist: their OIDs may be reused
  DELETE FROM authctx.isolated_tables s
   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.relid);

  SELECT a.attnum INTO colnum
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
   WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
     AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
     AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.uuid'::pg_catalog.regtype
     AND c.relkind IN ('r', 'p');
  IF colnum IS NULL THEN
    RAISE EXCEPTION 'table "%" has no uuid column "%"', tbl, col USING ERRCODE = '42703';
  END IF;
  IF idx IS NOT NULL AND authctx._isolation_index(tbl, col, idx) IS NULL THEN
    RAISE EXCEPTION 'table "%" has no index "%" leading with column "%"', tbl, idx, col
      USING ERRCODE = '42704';
  END IF;

  SELECT s.* INTO saved FROM authctx._isolation_state() s WHERE s.relid OPERATOR(pg_catalog.=) tbl;
  IF FOUND THEN
    -- isolated already: the state from before the first call stays
    IF saved.tenant_column OPERATOR(pg_catalog.<>) col THEN
      RAISE EXCEPTION 'table "%" is already isolated on column "%"', tbl, saved.tenant_column
        USING ERRCODE = '55000';
    END IF;
    IF idx IS NOT NULL THEN
      UPDATE authctx.isolated_tables s SET created_index = idx
       WHERE s.relid OPERATOR(pg_catalog.=) tbl;
    END IF;
    RETURN;
  END IF;

  -- a row without the policy is stale: the table's state now replaces it
  DELETE FROM authctx.isolated_tables s WHERE s.relid OPERATOR(pg_catalog.=) tbl;
  INSERT INTO authctx.isolated_tables
         (relid, tenant_column, rls_enabled, rls_forced, default_known, previous_default, created_index)
  SELECT tbl, col, c.relrowsecurity, c.relforcerowsecurity, true,
         (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d
           WHERE d.adrelid OPERATOR(pg_catalog.=) tbl AND d.adnum OPERATOR(pg_catalog.=) colnum),
         idx
    FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl;
END
$$;
COMMENT ON FUNCTION authctx._isolation_save_unchecked(regclass, name, name) IS
  'record tbl''s state before isolation, read from the catalog (or note the index idx on an isolated table); no ownership check: reached only through _isolation_save';

CREATE FUNCTION authctx._isolation_forget_unchecked(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM authctx.isolated_tables s
   WHERE s.relid OPERATOR(pg_catalog.=) tbl
      OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.relid);
END
$$;
COMMENT ON FUNCTION authctx._isolation_forget_unchecked(regclass) IS
  'forget tbl''s saved state (and rows of relations that no longer exist); no ownership check: reached only through _isolation_forget';

CREATE FUNCTION authctx._isolation_save(tbl regclass, col name, idx name) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_isolation_save'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authctx._isolation_save(regclass, name, name) IS
  'for the owner of tbl only: record its state before isolation (see _isolation_save_unchecked)';

CREATE FUNCTION authctx._isolation_forget(tbl regclass) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_isolation_forget'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authctx._isolation_forget(regclass) IS
  'for the owner of tbl only: forget its saved state (see _isolation_forget_unchecked)';

CREATE FUNCTION authctx.enable_tenant_isolation(tbl regclass, tenant_column name DEFAULT 'tenant_id')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  rel       pg_catalog.pg_class%ROWTYPE;
  coltype   regtype;
  saved     authctx.isolated_tables;
  isolated  boolean;
  idxname   text;
BEGIN
  IF tbl IS NULL OR tenant_column IS NULL THEN
    RAISE EXCEPTION 'table and tenant column must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) tbl;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = '42P01';
  END IF;
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

  -- Already isolated?  The state saved by the first call stays; only re-apply.
  SELECT s.* INTO saved FROM authctx._isolation_state() s WHERE s.relid OPERATOR(pg_catalog.=) tbl;
  isolated := FOUND;
  IF isolated AND saved.tenant_column OPERATOR(pg_catalog.<>) tenant_column THEN
    RAISE EXCEPTION 'table "%" is already isolated on column "%"', tbl, saved.tenant_column
      USING ERRCODE = '55000', HINT = 'Call authctx.disable_tenant_isolation first.';
  END IF;

  -- The index first: the state is saved before RLS and the default change.
  IF authctx._isolation_index(tbl, tenant_column, NULL) IS NULL THEN
    idxname := pg_catalog.left(rel.relname || '_' || tenant_column, 50) || '_authctx_idx';
    EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (%I)', idxname, tbl, tenant_column);
  END IF;
  IF NOT isolated OR idxname IS NOT NULL THEN
    PERFORM authctx._isolation_save(tbl, tenant_column, idxname);
  END IF;

  -- A partition read directly bypasses its parent's policies: cover the
  -- existing partitions too (partitions created later need their own call;
  -- isolation_report lists them).  Before the parent's ALTERs, which reach
  -- the partitions' defaults: each partition saves its own state first.
  PERFORM authctx.enable_tenant_isolation(i.inhrelid::regclass, tenant_column)
     FROM pg_catalog.pg_inherits i
    WHERE i.inhparent OPERATOR(pg_catalog.=) tbl;

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
  -- a note for people reading the catalog; nothing reads it back
  EXECUTE pg_catalog.format('COMMENT ON POLICY authctx_tenant_isolation ON %s IS %L', tbl,
    'authctx tenant isolation; state in authctx.isolated_tables, undone by authctx.disable_tenant_isolation');
END
$$;
COMMENT ON FUNCTION authctx.enable_tenant_isolation(regclass, name) IS
  'enable and force RLS with a tenant policy, column default and index; idempotent';

CREATE FUNCTION authctx.disable_tenant_isolation(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
DECLARE
  saved authctx.isolated_tables;
  idx   regclass;
  part  regclass;
BEGIN
  IF tbl IS NULL THEN
    RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT s.* INTO saved FROM authctx._isolation_state() s WHERE s.relid OPERATOR(pg_catalog.=) tbl;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table "%" is not isolated by authctx', tbl USING ERRCODE = '55000';
  END IF;

  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_tenant_isolation ON %s', tbl);
  EXECUTE pg_catalog.format('DROP POLICY IF EXISTS authctx_admin_bypass ON %s', tbl);
  IF saved.previous_default IS NULL THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, saved.tenant_column);
    IF NOT saved.default_known THEN
      RAISE NOTICE 'the default of column "%" of table "%" before isolation is unknown: the column now has no default',
                   saved.tenant_column, tbl
        USING HINT = 'authctx 0.1.0 recorded it in a form that is not restored automatically; '
                     'set it again with ALTER TABLE ... ALTER COLUMN ... SET DEFAULT if the table needs one.';
    END IF;
  ELSE
    -- pg_get_expr's text, from the catalog; in parentheses, it is one expression
    EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT (%s)',
                              tbl, saved.tenant_column, saved.previous_default);
  END IF;
  IF NOT saved.rls_forced THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', tbl);
  END IF;
  IF NOT saved.rls_enabled THEN
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
  END IF;
  -- the index enable made, if it is still this table's, on the column, and
  -- backs no constraint
  IF saved.created_index IS NOT NULL THEN
    idx := authctx._isolation_index(tbl, saved.tenant_column, saved.created_index);
  END IF;
  IF idx IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                                      WHERE k.conindid OPERATOR(pg_catalog.=) idx) THEN
    EXECUTE pg_catalog.format('DROP INDEX %s', idx);
  END IF;

  -- partitions isolated by authctx are released too
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
     WHERE i.inhparent OPERATOR(pg_catalog.=) tbl
       AND i.inhrelid IN (SELECT s.relid FROM authctx._isolation_state() s)
  LOOP
    PERFORM authctx.disable_tenant_isolation(part);
  END LOOP;
  PERFORM authctx._isolation_forget(tbl);
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
  WITH RECURSIVE isolated AS (
    SELECT s.relid::oid AS relid, s.tenant_column AS col FROM authctx._isolation_state() s
  ), below (relid, col, root) AS (
    -- partitions and inheritance children of isolated tables, at any depth:
    -- read directly, they show what their own policies allow
    SELECT i.inhrelid, k.col, k.relid
      FROM pg_catalog.pg_inherits i JOIN isolated k ON i.inhparent OPERATOR(pg_catalog.=) k.relid
    UNION
    SELECT i.inhrelid, b.col, b.root
      FROM pg_catalog.pg_inherits i JOIN below b ON i.inhparent OPERATOR(pg_catalog.=) b.relid
  ), candidates AS (
    SELECT c.oid AS relid, c.relrowsecurity, c.relforcerowsecurity, c.relowner, c.relacl,
           COALESCE(k.col, b.col, 'tenant_id')::name AS col,
           k.relid IS NOT NULL AS isolated, b.root
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
      LEFT JOIN isolated k ON k.relid OPERATOR(pg_catalog.=) c.oid
      LEFT JOIN LATERAL (SELECT b.col, b.root FROM below b
                          WHERE b.relid OPERATOR(pg_catalog.=) c.oid
                          ORDER BY b.root LIMIT 1) b ON true
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'authctx')
       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  ), checked AS (
    SELECT c.relid, c.col, c.relrowsecurity, c.relforcerowsecurity, c.isolated, c.root,
           tp.polname IS NOT NULL AS tenant_policy,
           COALESCE(tp.polcmd OPERATOR(pg_catalog.=) '*' AND tp.polpermissive
                    AND tp.polroles OPERATOR(pg_catalog.=) '{0}'::oid[]
                    AND pg_catalog.pg_get_expr(tp.polqual, tp.polrelid) OPERATOR(pg_catalog.=) authctx._isolation_qual(c.col)
                    AND pg_catalog.pg_get_expr(tp.polwithcheck, tp.polrelid) OPERATOR(pg_catalog.=) authctx._isolation_qual(c.col),
                    false) AS has_policy,
           COALESCE(bp.polcmd OPERATOR(pg_catalog.=) '*' AND bp.polpermissive
                    AND bp.polroles OPERATOR(pg_catalog.=) ARRAY['authctx_admin'::regrole::oid]
                    AND pg_catalog.pg_get_expr(bp.polqual, bp.polrelid) OPERATOR(pg_catalog.=) 'authctx.admin_bypass()'
                    AND pg_catalog.pg_get_expr(bp.polwithcheck, bp.polrelid) OPERATOR(pg_catalog.=) 'authctx.admin_bypass()',
                    true) AS bypass_intact,
           (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(o.polname), ', ' ORDER BY o.polname)
              FROM pg_catalog.pg_policy o
             WHERE o.polrelid OPERATOR(pg_catalog.=) c.relid AND o.polpermissive
               AND o.polname NOT IN ('authctx_tenant_isolation', 'authctx_admin_bypass')) AS other_policies,
           authctx._isolation_index(c.relid, c.col, NULL) IS NOT NULL AS has_index,
           (SELECT pg_catalog.string_agg(pg_catalog.format('%s to %s', g.privilege_type, g.grantee), ', '
                                         ORDER BY g.privilege_type, g.grantee)
              FROM (SELECT DISTINCT a.privilege_type,
                           CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
                      FROM pg_catalog.aclexplode(c.relacl) a
                     WHERE a.privilege_type IN ('TRUNCATE', 'TRIGGER', 'REFERENCES')
                       AND a.grantee OPERATOR(pg_catalog.<>) c.relowner) g) AS unlimited_grants,
           (SELECT pg_catalog.string_agg(pg_catalog.format('%I (to %s)', f.conname, f.confrelid::regclass), ', '
                                         ORDER BY f.conname)
              FROM pg_catalog.pg_constraint f
              JOIN pg_catalog.pg_policy fp
                ON fp.polrelid OPERATOR(pg_catalog.=) f.confrelid
               AND fp.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'
              LEFT JOIN pg_catalog.pg_attribute ta
                ON ta.attrelid OPERATOR(pg_catalog.=) c.relid AND ta.attname OPERATOR(pg_catalog.=) c.col
              LEFT JOIN pg_catalog.pg_attribute ra
                ON ra.attrelid OPERATOR(pg_catalog.=) f.confrelid
               AND ra.attnum OPERATOR(pg_catalog.=)
                   f.confkey[pg_catalog.array_position(f.conkey, ta.attnum)]
             WHERE f.conrelid OPERATOR(pg_catalog.=) c.relid AND f.contype OPERATOR(pg_catalog.=) 'f'
               AND (ra.attname IS NULL
                    OR ra.attname OPERATOR(pg_catalog.<>)
                       COALESCE((SELECT s.tenant_column FROM authctx._isolation_state() s
                                  WHERE s.relid OPERATOR(pg_catalog.=) f.confrelid), 'tenant_id'))
           ) AS cross_tenant_keys
      FROM candidates c
      LEFT JOIN pg_catalog.pg_policy tp
        ON tp.polrelid OPERATOR(pg_catalog.=) c.relid AND tp.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation'
      LEFT JOIN pg_catalog.pg_policy bp
        ON bp.polrelid OPERATOR(pg_catalog.=) c.relid AND bp.polname OPERATOR(pg_catalog.=) 'authctx_admin_bypass'
     WHERE c.isolated OR c.root IS NOT NULL OR tp.polname IS NOT NULL
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) c.relid AND a.attname OPERATOR(pg_catalog.=) 'tenant_id'
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  )
  SELECT k.relid::regclass, k.col, k.relrowsecurity, k.relforcerowsecurity, k.has_policy, k.has_index,
         NULLIF(pg_catalog.concat_ws('; ',
           CASE WHEN NOT k.relrowsecurity THEN 'row level security is not enabled' END,
           CASE WHEN NOT k.relforcerowsecurity THEN 'row level security is not forced (the owner bypasses it)' END,
           CASE WHEN NOT k.tenant_policy THEN 'no authctx tenant isolation policy'
                WHEN NOT k.has_policy THEN 'the authctx tenant isolation policy was changed'
                WHEN NOT k.isolated THEN 'no saved isolation state (call authctx.enable_tenant_isolation again)' END,
           CASE WHEN k.root IS NOT NULL AND NOT k.isolated
                THEN pg_catalog.format('partition or child of isolated table %s, not isolated itself', k.root::regclass) END,
           CASE WHEN NOT k.bypass_intact THEN 'the authctx admin bypass policy was changed' END,
           CASE WHEN k.other_policies IS NOT NULL
                THEN 'other permissive policies widen access: ' OPERATOR(pg_catalog.||) k.other_policies END,
           CASE WHEN NOT k.has_index THEN 'no index leading with the tenant column' END,
           CASE WHEN k.unlimited_grants IS NOT NULL
                THEN 'privileges that row level security does not limit (TRUNCATE empties every tenant, a TRIGGER sees every tenant''s writes, REFERENCES probes every tenant''s keys): '
                     OPERATOR(pg_catalog.||) k.unlimited_grants END,
           CASE WHEN k.cross_tenant_keys IS NOT NULL
                THEN 'foreign keys to an isolated table without the tenant column (checked without row level security, they let a row reference, probe and pin another tenant''s rows: make them (tenant column, ...)): '
                     OPERATOR(pg_catalog.||) k.cross_tenant_keys END), '')
    FROM checked k
   ORDER BY k.relid::regclass::text;
$$;
COMMENT ON FUNCTION authctx.isolation_report() IS
  'one row per table with a tenant_id column, authctx isolation, or an isolated parent, and what is wrong with it';

CREATE FUNCTION authctx.security_report()
RETURNS TABLE (object_type text, object_name text, role name, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH trusted AS (
    -- whoever can do anything anyway
    SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolsuper
    UNION
    SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'authctx'
  ), searched AS (
    -- the schemas the default search_path ("$user", public) reads for
    -- auth_begin: public, and a schema named after a role that may call it
    SELECT n.oid, n.nspname, NULL::name AS for_role
      FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'public'
    UNION ALL
    SELECT n.oid, n.nspname, r.rolname
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) n.nspname
     WHERE pg_catalog.pg_has_role(r.oid, 'authctx_app', 'MEMBER')
  ), creators AS (
    SELECT s.nspname, s.for_role, 'public'::name AS role
      FROM searched s
     WHERE pg_catalog.has_schema_privilege('public', s.oid, 'CREATE')
    UNION ALL
    SELECT s.nspname, s.for_role, r.rolname
      FROM searched s, pg_catalog.pg_roles r
     WHERE NOT pg_catalog.has_schema_privilege('public', s.oid, 'CREATE')
       AND pg_catalog.has_schema_privilege(r.oid, s.oid, 'CREATE')
       AND r.oid NOT IN (SELECT t.oid FROM trusted t)
       AND r.rolname !~ '^pg_'
  )
  SELECT 'schema', pg_catalog.quote_ident(c.nspname), c.role,
         CASE WHEN c.for_role IS NULL
              THEN pg_catalog.format('%s may create objects in schema public, where every role looks for auth_begin: a function there with the same name and an equal or better-matching signature would receive the tokens',
                                     CASE WHEN c.role OPERATOR(pg_catalog.=) 'public' THEN 'every role (PUBLIC)'
                                          ELSE pg_catalog.format('role %I', c.role) END)
              ELSE pg_catalog.format('%s may create objects in schema %I, which role %I (a member of authctx_app) searches before public: a function named auth_begin there would receive that role''s tokens',
                                     CASE WHEN c.role OPERATOR(pg_catalog.=) 'public' THEN 'every role (PUBLIC)'
                                          ELSE pg_catalog.format('role %I', c.role) END,
                                     c.nspname, c.for_role)
         END
    FROM creators c
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner),
         pg_catalog.format('function %s is not authctx''s: a call to %s may resolve to it (and receive tokens)',
                           p.oid::regprocedure, p.proname)
    FROM pg_catalog.pg_proc p
   WHERE p.proname IN ('auth_begin', 'auth_end')
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                       JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
                      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                        AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        AND e.extname OPERATOR(pg_catalog.=) 'authctx')
  ORDER BY 1, 2, 3;
$$;
COMMENT ON FUNCTION authctx.security_report() IS
  'what could stand in for auth_begin or auth_end: roles (besides superusers and the extension''s owner) that may create objects in schema public or in a schema named after a member of authctx_app, and functions of those names outside the extension; no rows when there is none';

CREATE FUNCTION authctx.admin_begin(reason text) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_admin_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authctx.admin_begin(text) IS
  'audited bypass of tenant isolation for this transaction; members of authctx_admin only';

REVOKE ALL ON TABLE authctx.isolated_tables FROM PUBLIC;
REVOKE ALL ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report(),
  authctx.admin_begin(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION authctx._isolation_qual(name), authctx._isolation_index(regclass, name, name),
  authctx._isolation_state(),
  authctx._isolation_save_unchecked(regclass, name, name), authctx._isolation_forget_unchecked(regclass),
  authctx._isolation_save(regclass, name, name), authctx._isolation_forget(regclass),
  authctx.security_report() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.enable_tenant_isolation(regclass, name),
  authctx.disable_tenant_isolation(regclass), authctx.isolation_report() TO authctx_manager;
-- the helpers the isolation functions call as their caller; the _unchecked
-- ones get no grant at all (see the header of the tenant section)
GRANT EXECUTE ON FUNCTION authctx._isolation_qual(name), authctx._isolation_index(regclass, name, name),
  authctx._isolation_state(),
  authctx._isolation_save(regclass, name, name), authctx._isolation_forget(regclass),
  authctx.security_report() TO authctx_manager;
GRANT EXECUTE ON FUNCTION authctx.admin_begin(text) TO authctx_admin;
