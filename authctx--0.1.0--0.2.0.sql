-- authctx 0.1.0 -> 0.2.0
--
-- Every change to the schema since 0.1.0, in the order the sections were
-- added.  The result must equal a fresh install of 0.2.0 (test/t/050_upgrade.pl
-- compares the two), and no row may be lost.
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION authctx UPDATE TO '0.2.0'" to load this file. \quit

-- tenant-lint: isolation state out of policy comments (authctx.isolated_tables,
-- written only through owner-checked helpers; 0.1.0's comments migrated after
-- validation), isolation_report checks policies and partitions, security_report
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

CREATE OR REPLACE FUNCTION authctx.enable_tenant_isolation(tbl regclass, tenant_column name DEFAULT 'tenant_id')
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

CREATE OR REPLACE FUNCTION authctx.disable_tenant_isolation(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
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

CREATE OR REPLACE FUNCTION authctx.isolation_report()
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
    SELECT c.oid AS relid, c.relrowsecurity, c.relforcerowsecurity,
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
           authctx._isolation_index(c.relid, c.col, NULL) IS NOT NULL AS has_index
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
           CASE WHEN NOT k.has_index THEN 'no index leading with the tenant column' END), '')
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

REVOKE ALL ON TABLE authctx.isolated_tables FROM PUBLIC;
REVOKE ALL ON FUNCTION authctx._isolation_qual(name), authctx._isolation_index(regclass, name, name),
  authctx._isolation_state(),
  authctx._isolation_save_unchecked(regclass, name, name), authctx._isolation_forget_unchecked(regclass),
  authctx._isolation_save(regclass, name, name), authctx._isolation_forget(regclass),
  authctx.security_report() FROM PUBLIC;
-- the helpers the isolation functions call as their caller; the _unchecked
-- ones get no grant at all (see the header of the tenant section)
GRANT EXECUTE ON FUNCTION authctx._isolation_qual(name), authctx._isolation_index(regclass, name, name),
  authctx._isolation_state(),
  authctx._isolation_save(regclass, name, name), authctx._isolation_forget(regclass),
  authctx.security_report() TO authctx_manager;

-- 0.1.0 kept each table's state as JSON in the COMMENT of its
-- authctx_tenant_isolation policy, which the table's owner can rewrite.
-- Take from it only what can be checked: the column is the one the policy
-- itself compares; the RLS flags must be JSON booleans (else RLS stays on
-- after disable: fail closed); the index must exist on that table and lead
-- with the column.  The old default is text, never run as SQL unless it is
-- NULL or one of the forms 0.1.0 printed for a uuid constant, NULL or
-- gen_random_uuid(); anything else is recorded as unknown, and disable then
-- drops the default and says so.
DO $migrate$
DECLARE
  pol     record;
  state   jsonb;
  col     name;
  rls_e   boolean;
  rls_f   boolean;
  def     text;
  known   boolean;
  idx     name;
  path    text := pg_catalog.current_setting('search_path');
BEGIN
  -- pg_get_expr must print what _isolation_qual expects
  PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  FOR pol IN
    SELECT p.oid, p.polrelid, p.polrelid::regclass AS tbl, p.polqual
      FROM pg_catalog.pg_policy p
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
     WHERE p.polname OPERATOR(pg_catalog.=) 'authctx_tenant_isolation' AND c.relkind IN ('r', 'p')
     ORDER BY p.polrelid
  LOOP
    col := NULL;
    SELECT a.attname INTO col
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) pol.polrelid
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.uuid'::pg_catalog.regtype
       AND authctx._isolation_qual(a.attname) OPERATOR(pg_catalog.=) pg_catalog.pg_get_expr(pol.polqual, pol.polrelid);
    IF col IS NULL THEN
      RAISE WARNING 'policy authctx_tenant_isolation on table "%" is not one authctx created: its state was not migrated', pol.tbl
        USING HINT = 'Check the table''s policies, then call authctx.enable_tenant_isolation on it to record its present state.';
      CONTINUE;
    END IF;
    BEGIN
      state := pg_catalog.obj_description(pol.oid, 'pg_policy')::jsonb;
    EXCEPTION WHEN OTHERS THEN
      state := NULL;
    END;
    IF pg_catalog.jsonb_typeof(state) IS DISTINCT FROM 'object'
       OR state->>'column' IS DISTINCT FROM col::text THEN
      state := '{}';             -- nothing in it can be trusted
    END IF;
    rls_e := CASE WHEN pg_catalog.jsonb_typeof(state->'rls_enabled') OPERATOR(pg_catalog.=) 'boolean'
                  THEN (state->'rls_enabled')::boolean ELSE true END;
    rls_f := CASE WHEN pg_catalog.jsonb_typeof(state->'rls_forced') OPERATOR(pg_catalog.=) 'boolean'
                  THEN (state->'rls_forced')::boolean ELSE true END;
    idx := NULL;
    IF pg_catalog.jsonb_typeof(state->'index') OPERATOR(pg_catalog.=) 'string' THEN
      IF authctx._isolation_index(pol.polrelid, col, (state->>'index')::pg_catalog.name) IS NOT NULL THEN
        idx := state->>'index';
      END IF;
    END IF;
    IF pg_catalog.jsonb_typeof(state->'default') OPERATOR(pg_catalog.=) 'null' THEN
      known := true;
      def := NULL;
    ELSIF pg_catalog.jsonb_typeof(state->'default') OPERATOR(pg_catalog.=) 'string'
          AND state->>'default' OPERATOR(pg_catalog.~)
              '^(''[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}''::uuid|NULL::uuid|gen_random_uuid\(\))$' THEN
      known := true;
      def := state->>'default';
    ELSE
      known := false;
      def := NULL;
    END IF;
    IF NOT known THEN
      RAISE WARNING 'the default of column "%" of table "%" before isolation is not restorable', col, pol.tbl
        USING HINT = 'authctx 0.1.0 recorded it where the table''s owner can rewrite it, in a form not restored automatically; '
                     'disable_tenant_isolation will drop the default.';
    END IF;
    INSERT INTO authctx.isolated_tables
           (relid, tenant_column, rls_enabled, rls_forced, default_known, previous_default, created_index)
    VALUES (pol.polrelid, col, rls_e, rls_f, known, def, idx);
    EXECUTE pg_catalog.format('COMMENT ON POLICY authctx_tenant_isolation ON %s IS %L', pol.tbl,
      'authctx tenant isolation; state in authctx.isolated_tables, undone by authctx.disable_tenant_isolation');
  END LOOP;
  PERFORM pg_catalog.set_config('search_path', path, true);
END
$migrate$;

-- sec-context: auth_begin for character varying
-- A function another role created in public with one of these signatures
-- (it would have received every token bound as varchar) makes the update
-- fail here, on purpose: inspect it, drop it, and update again.
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
            WHERE p.pronamespace OPERATOR(pg_catalog.=) 'public'::regnamespace
              AND p.proname OPERATOR(pg_catalog.=) 'auth_begin'
              AND p.proargtypes::pg_catalog.oid[] OPERATOR(pg_catalog.&&)
                  ARRAY['pg_catalog.varchar'::pg_catalog.regtype::pg_catalog.oid] LOOP
    RAISE EXCEPTION 'function % exists and is not part of authctx', f
      USING ERRCODE = '42723',
            HINT = 'It may have been created to receive tokens bound as character varying: inspect it, drop it, then run ALTER EXTENSION authctx UPDATE again.';
  END LOOP;
END
$$;

-- The same entry point for character varying, every combination of it with
-- text: drivers bind strings as varchar (pgjdbc does by default), and
-- function resolution prefers an exact match, so a public.auth_begin(varchar)
-- created by a role with CREATE on public would receive every such token.
-- With these in place, no signature another role can create in public
-- matches a text or varchar call better than ours (an identical signature in
-- a schema earlier in the search path still would: call
-- public.auth_begin($1::text), and see isolation_report).
CREATE FUNCTION public.auth_begin(token character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying) IS
  'authctx: auth_begin(token) for a token bound as character varying';

CREATE FUNCTION public.auth_begin(token character varying, tenant character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying, character varying) IS
  'authctx: auth_begin(token, tenant) for arguments bound as character varying';

CREATE FUNCTION public.auth_begin(token text, tenant character varying) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(text, character varying) IS
  'authctx: auth_begin(token, tenant) for a tenant bound as character varying';

CREATE FUNCTION public.auth_begin(token character varying, tenant text) RETURNS authctx.context
  AS 'MODULE_PATHNAME', 'authctx_auth_begin'
  LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION public.auth_begin(character varying, text) IS
  'authctx: auth_begin(token, tenant) for a token bound as character varying';

REVOKE ALL ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.auth_begin(character varying),
  public.auth_begin(character varying, character varying),
  public.auth_begin(text, character varying),
  public.auth_begin(character varying, text) TO authctx_app;

-- sec-context: API key scopes are validated (no separator, no truncation)
-- The scope rule lives in C (session.c), where auth_begin checks the stored
-- scopes again: 1 to 128 characters from A-Z a-z 0-9 _ . : / * + -, at most
-- 64 scopes, at most 1023 bytes joined.
CREATE FUNCTION authctx._check_scopes(scopes text[]) RETURNS void
  AS 'MODULE_PATHNAME', 'authctx_check_scopes'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._check_scopes(text[]) IS
  'internal: raises 22023 unless the array is a valid list of API key scopes';
REVOKE ALL ON FUNCTION authctx._check_scopes(text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx.create_api_key(user_id uuid, tenant text, name text,
                                       scopes text[] DEFAULT '{}',
                                       expires_at timestamptz DEFAULT NULL)
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok    authctx.token := authctx._token_new('api_key');
  v_user   uuid := authctx._enabled_user(create_api_key.user_id);
  v_tenant uuid := authctx._member_tenant(v_user, create_api_key.tenant, true);
  v_scopes text[] := coalesce(create_api_key.scopes, '{}');
BEGIN
  IF coalesce(btrim(create_api_key.name), '') = '' THEN
    RAISE EXCEPTION 'an API key needs a name' USING ERRCODE = '22023';
  END IF;
  PERFORM authctx._check_scopes(v_scopes);
  IF create_api_key.expires_at <= clock_timestamp() THEN
    RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023';
  END IF;
  INSERT INTO authctx.api_keys (id, user_id, tenant_id, name, scopes, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_tok), v_user, v_tenant, create_api_key.name, v_scopes,
          authctx._token_verifier(v_tok), clock_timestamp(), create_api_key.expires_at);
  PERFORM authctx._audit('api_key_created', v_user, v_tenant, authctx._token_id(v_tok),
                         jsonb_build_object('name', create_api_key.name, 'scopes', to_jsonb(v_scopes)));
  RETURN v_tok;
END
$$;

-- Keys stored by 0.1.0 with scopes that break the rule are left as they
-- are: auth_begin refuses them (28000), list_api_keys still shows them, and
-- revoke_api_key or a new key replaces them.  Say how many there are.
DO $$
DECLARE
  k record;
  n bigint := 0;
BEGIN
  FOR k IN SELECT a.scopes FROM authctx.api_keys a WHERE a.revoked_at IS NULL LOOP
    BEGIN
      PERFORM authctx._check_scopes(k.scopes);
    EXCEPTION WHEN invalid_parameter_value THEN
      n := n OPERATOR(pg_catalog.+) 1;
    END;
  END LOOP;
  IF n OPERATOR(pg_catalog.>) 0 THEN
    RAISE WARNING 'API keys whose scopes authctx 0.2.0 does not accept: %; auth_begin will refuse them', n
      USING HINT = 'Find them with authctx.list_api_keys, revoke them and create new keys with valid scopes.';
  END IF;
END
$$;

-- issuer: external identity providers (JWT access tokens), phase 1: the
-- issuer registry (tables, key parsing at registration, add/set/remove/
-- list_issuers) and the internal verifier authctx._jwt_verify.  Same text
-- as src/sql/47_issuer.sql.
CREATE TABLE authctx.issuers (
  issuer           text PRIMARY KEY
                   CHECK (pg_catalog.octet_length(issuer) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(issuer) OPERATOR(pg_catalog.<=) 1024),
  audience         text NOT NULL
                   CHECK (pg_catalog.octet_length(audience) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(audience) OPERATOR(pg_catalog.<=) 1024),
  tenant_claim     text
                   CHECK (pg_catalog.octet_length(tenant_claim) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.octet_length(tenant_claim) OPERATOR(pg_catalog.<=) 1024),
  leeway           interval NOT NULL DEFAULT '30 seconds'
                   CHECK (leeway OPERATOR(pg_catalog.>=) interval '0'
                          AND leeway OPERATOR(pg_catalog.<=) interval '10 minutes'),
  created_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  keys_changed_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.issuers IS
  'trusted external token issuers (exact iss), the audience their tokens must carry, tenant claim and clock leeway';

CREATE TABLE authctx.issuer_keys (
  issuer      text NOT NULL REFERENCES authctx.issuers (issuer)
              ON DELETE CASCADE ON UPDATE CASCADE,
  ordinal     integer NOT NULL CHECK (ordinal OPERATOR(pg_catalog.>=) 0),
  kid         text,                 -- NULL when the JWK has none
  kty         text NOT NULL
              CHECK (kty OPERATOR(pg_catalog.=) ANY (ARRAY['OKP', 'EC', 'RSA'])),
  alg         text NOT NULL
              CHECK (alg OPERATOR(pg_catalog.=) ANY (ARRAY['EdDSA', 'ES256', 'RS256'])),
  public_key  bytea NOT NULL,       -- Ed25519 key, P-256 point, or RSA DER SPKI
  PRIMARY KEY (issuer, ordinal),
  UNIQUE (issuer, kid)
);
COMMENT ON TABLE authctx.issuer_keys IS
  'verification keys of each issuer, parsed and validated at registration: public parts only';

REVOKE ALL ON TABLE authctx.issuers, authctx.issuer_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('authctx.issuers', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.issuer_keys', '');

-- C helpers ------------------------------------------------------------------

CREATE FUNCTION authctx._issuer_parse_jwks(jwks jsonb,
    OUT kid text, OUT kty text, OUT alg text, OUT public_key bytea)
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'authctx_issuer_parse_jwks'
  LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION authctx._issuer_parse_jwks(jsonb) IS
  'internal: the usable keys of a JWK Set, parsed and validated, in stored form; 22023 for a private, malformed or invalid key or no usable key';

CREATE FUNCTION authctx._issuer_invalidate() RETURNS trigger
  AS 'MODULE_PATHNAME', 'authctx_issuer_invalidate'
  LANGUAGE C;
COMMENT ON FUNCTION authctx._issuer_invalidate() IS
  'internal trigger: every backend drops its cached issuer keys when the change commits';

CREATE FUNCTION authctx._jwt_verify(token text, now timestamptz DEFAULT NULL)
  RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_jwt_verify'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._jwt_verify(text, timestamptz) IS
  'internal: verify a JWT against the registry at now (default: the wall clock); its claims and what auth_begin needs, or 28000';

CREATE FUNCTION authctx._jwt_reason(token text, now timestamptz DEFAULT NULL)
  RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_jwt_reason'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._jwt_reason(text, timestamptz) IS
  'internal (tests, diagnosis): why _jwt_verify refuses a token, or ok';

CREATE TRIGGER issuer_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authctx.issuers
  FOR EACH STATEMENT EXECUTE FUNCTION authctx._issuer_invalidate();
CREATE TRIGGER issuer_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authctx.issuer_keys
  FOR EACH STATEMENT EXECUTE FUNCTION authctx._issuer_invalidate();
ALTER TABLE authctx.issuers ENABLE ALWAYS TRIGGER issuer_invalidate;
ALTER TABLE authctx.issuer_keys ENABLE ALWAYS TRIGGER issuer_invalidate;

-- Store the keys of a set for an issuer (rows numbered from 0); their kids.
CREATE FUNCTION authctx._issuer_store_keys(issuer text, jwks jsonb)
RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kids text[];
BEGIN
  INSERT INTO authctx.issuer_keys (issuer, ordinal, kid, kty, alg, public_key)
  SELECT _issuer_store_keys.issuer, (k.n OPERATOR(pg_catalog.-) 1)::integer,
         k.kid, k.kty, k.alg, k.public_key
    FROM authctx._issuer_parse_jwks(_issuer_store_keys.jwks)
         WITH ORDINALITY AS k(kid, kty, alg, public_key, n);
  SELECT pg_catalog.array_agg(k.kid ORDER BY k.ordinal) INTO v_kids
    FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) _issuer_store_keys.issuer;
  RETURN v_kids;
END
$$;
COMMENT ON FUNCTION authctx._issuer_store_keys(text, jsonb) IS
  'internal: parse a key set and store its usable keys for an issuer; their kids in order';

-- registry ------------------------------------------------------------------

CREATE FUNCTION authctx.add_issuer(issuer text, audience text, jwks jsonb,
    tenant_claim text DEFAULT NULL, leeway interval DEFAULT '30 seconds')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kids text[];
  v_now  timestamptz;
BEGIN
  IF add_issuer.issuer IS NULL OR add_issuer.audience IS NULL
     OR add_issuer.jwks IS NULL OR add_issuer.leeway IS NULL THEN
    RAISE EXCEPTION 'issuer, audience, jwks and leeway must not be null'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF pg_catalog.octet_length(add_issuer.issuer) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid issuer'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An issuer is the exact "iss" string of its tokens, 1 to 1024 bytes.';
  END IF;
  IF pg_catalog.octet_length(add_issuer.audience) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid audience'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An audience is the exact "aud" string the issuer''s tokens must carry, 1 to 1024 bytes.';
  END IF;
  IF pg_catalog.octet_length(add_issuer.tenant_claim) NOT BETWEEN 1 AND 1024 THEN
    RAISE EXCEPTION 'invalid tenant claim name'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The tenant claim is the name of a top-level claim, 1 to 1024 bytes, or NULL.';
  END IF;
  IF add_issuer.leeway OPERATOR(pg_catalog.<) interval '0'
     OR add_issuer.leeway OPERATOR(pg_catalog.>) interval '10 minutes' THEN
    RAISE EXCEPTION 'invalid leeway'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'The clock leeway is between 0 and 10 minutes.';
  END IF;

  v_now := pg_catalog.clock_timestamp();
  INSERT INTO authctx.issuers (issuer, audience, tenant_claim, leeway,
                               created_at, keys_changed_at)
  VALUES (add_issuer.issuer, add_issuer.audience, add_issuer.tenant_claim,
          add_issuer.leeway, v_now, v_now)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is already registered', add_issuer.issuer
      USING ERRCODE = 'unique_violation',
            HINT = 'Use authctx.set_issuer_keys to replace its keys, or remove it first.';
  END IF;
  v_kids := authctx._issuer_store_keys(add_issuer.issuer, add_issuer.jwks);

  PERFORM authctx._audit('issuer_added', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object(
                           'issuer', add_issuer.issuer,
                           'audience', add_issuer.audience,
                           'key_ids', pg_catalog.to_jsonb(v_kids),
                           'tenant_claim', add_issuer.tenant_claim,
                           'leeway', add_issuer.leeway::text));
END
$$;
COMMENT ON FUNCTION authctx.add_issuer(text, text, jsonb, text, interval) IS
  'register a trusted token issuer (exact iss), the audience its tokens must carry, its JWK Set, an optional tenant claim and a clock leeway';

CREATE FUNCTION authctx.set_issuer_keys(issuer text, jwks jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_old text[];
  v_new text[];
BEGIN
  IF set_issuer_keys.issuer IS NULL OR set_issuer_keys.jwks IS NULL THEN
    RAISE EXCEPTION 'issuer and jwks must not be null'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  PERFORM 1 FROM authctx.issuers i
    WHERE i.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer
    FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is not registered', set_issuer_keys.issuer
      USING ERRCODE = 'undefined_object';
  END IF;

  SELECT pg_catalog.array_agg(k.kid ORDER BY k.ordinal) INTO v_old
    FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;
  DELETE FROM authctx.issuer_keys k
   WHERE k.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;
  v_new := authctx._issuer_store_keys(set_issuer_keys.issuer, set_issuer_keys.jwks);
  UPDATE authctx.issuers i SET keys_changed_at = pg_catalog.clock_timestamp()
   WHERE i.issuer OPERATOR(pg_catalog.=) set_issuer_keys.issuer;

  PERFORM authctx._audit('issuer_keys_changed', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object(
                           'issuer', set_issuer_keys.issuer,
                           'old_key_ids', pg_catalog.to_jsonb(v_old),
                           'key_ids', pg_catalog.to_jsonb(v_new)));
END
$$;
COMMENT ON FUNCTION authctx.set_issuer_keys(text, jsonb) IS
  'replace an issuer''s key set atomically (rotation: publish old and new keys together, later the new ones only)';

CREATE FUNCTION authctx.remove_issuer(issuer text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM authctx.issuers i
   WHERE i.issuer OPERATOR(pg_catalog.=) remove_issuer.issuer;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'issuer "%" is not registered', remove_issuer.issuer
      USING ERRCODE = 'undefined_object';
  END IF;
  PERFORM authctx._audit('issuer_removed', NULL, NULL, NULL,
                         pg_catalog.jsonb_build_object('issuer', remove_issuer.issuer));
END
$$;
COMMENT ON FUNCTION authctx.remove_issuer(text) IS
  'remove a trusted issuer and its keys; its tokens stop working at the next verification';

CREATE FUNCTION authctx.list_issuers()
RETURNS TABLE (issuer text, audience text, key_ids text[], tenant_claim text,
               leeway interval, created_at timestamptz, keys_changed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.issuer, i.audience,
         ARRAY(SELECT k.kid FROM authctx.issuer_keys k
                WHERE k.issuer OPERATOR(pg_catalog.=) i.issuer
                ORDER BY k.ordinal),
         i.tenant_claim, i.leeway, i.created_at, i.keys_changed_at
    FROM authctx.issuers i
   ORDER BY i.issuer
$$;
COMMENT ON FUNCTION authctx.list_issuers() IS
  'registered issuers with their audience, key ids (NULL for a key without kid), tenant claim, leeway and dates';

REVOKE ALL ON FUNCTION
  authctx._issuer_parse_jwks(jsonb),
  authctx._issuer_invalidate(),
  authctx._jwt_verify(text, timestamptz),
  authctx._jwt_reason(text, timestamptz),
  authctx._issuer_store_keys(text, jsonb),
  authctx.add_issuer(text, text, jsonb, text, interval),
  authctx.set_issuer_keys(text, jsonb),
  authctx.remove_issuer(text),
  authctx.list_issuers()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  authctx.add_issuer(text, text, jsonb, text, interval),
  authctx.set_issuer_keys(text, jsonb),
  authctx.remove_issuer(text),
  authctx.list_issuers()
TO authctx_admin;

-- durability: every table with data registered for pg_dump (and the audit_log
-- identity sequence); authctx._data_version and its restore guard
CREATE TABLE authctx._data_version (
  version  text PRIMARY KEY
);
COMMENT ON TABLE authctx._data_version IS
  'internal: the extension version the rows of this database are shaped for; dumped, and checked on restore';
REVOKE ALL ON authctx._data_version FROM PUBLIC;

-- During CREATE / ALTER EXTENSION the catalog already names the version
-- being installed.
INSERT INTO authctx._data_version (version)
SELECT e.extversion FROM pg_catalog.pg_extension e
 WHERE e.extname OPERATOR(pg_catalog.=) 'authctx';

CREATE FUNCTION authctx._data_version_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  installed text;
BEGIN
  SELECT e.extversion INTO installed
    FROM pg_catalog.pg_extension e
   WHERE e.extname OPERATOR(pg_catalog.=) 'authctx';
  IF NEW.version IS DISTINCT FROM installed THEN
    RAISE EXCEPTION 'the authctx data being restored is of version %, but authctx % is installed in this database',
                    NEW.version, installed
      USING ERRCODE = '55000',
            DETAIL = 'Rows of one version cannot be loaded into the tables of another: they would skip the update scripts.',
            HINT = pg_catalog.format('Restore into a new database in which you first run CREATE EXTENSION authctx VERSION %L, then run ALTER EXTENSION authctx UPDATE.',
                                     NEW.version);
  END IF;
  IF EXISTS (SELECT FROM authctx._data_version) THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION authctx._data_version_guard() IS
  'internal trigger: refuse restored authctx rows of another version than the installed one';
REVOKE ALL ON FUNCTION authctx._data_version_guard() FROM PUBLIC;

CREATE TRIGGER data_version_guard
  BEFORE INSERT ON authctx._data_version FOR EACH ROW
  EXECUTE FUNCTION authctx._data_version_guard();
-- also under session_replication_role = replica (some restore tools)
ALTER TABLE authctx._data_version ENABLE ALWAYS TRIGGER data_version_guard;

-- Registered for pg_dump: every row of every table below, in an order that
-- follows the foreign keys (pg_dump orders the data by them anyway).
SELECT pg_catalog.pg_extension_config_dump('authctx._data_version', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.users', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.memberships', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.password_credentials', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.oauth_identities', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.webauthn_credentials', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.login_throttle', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.refresh_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.audit_log_id_seq', '');

-- worker: failing closed and a result channel.  _autonomous raises 55000
-- instead of warning and returning false; _autonomous_call returns the
-- record's result; _autonomous_apply returns jsonb (a new return type:
-- DROP + CREATE).
COMMENT ON FUNCTION authctx._autonomous(text, jsonb) IS
  'internal: apply a record in a background worker''s own transaction and wait; true, or 55000 if it could not be written';

CREATE FUNCTION authctx._autonomous_call(kind text, payload jsonb) RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_autonomous_call'
  LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authctx._autonomous_call(text, jsonb) IS
  'internal: apply a record in a background worker''s own transaction and wait; its result, or 55000 if it could not be written';
REVOKE ALL ON FUNCTION authctx._autonomous_call(text, jsonb) FROM PUBLIC;

DROP FUNCTION authctx._autonomous_apply(text, jsonb);
CREATE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_user      uuid;
  v_role      name := coalesce(payload ->> 'db_role', session_user::text);
  v_failures  integer;
  v_threshold integer;
  v_base      double precision;
  v_max       double precision;
  v_locked    timestamptz;
  v_family    uuid;
  v_sessions  integer;
  v_kind      text;
  v_ids       uuid[];
  v_ats       timestamptz[];
  v_result    jsonb := '{}';
BEGIN
  IF kind = 'audit' THEN
    IF coalesce(payload ->> 'event', '') = '' THEN
      RAISE EXCEPTION 'audit record without an event' USING ERRCODE = '22023';
    END IF;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now,
            payload ->> 'event',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            coalesce(payload -> 'detail', '{}'::jsonb));

  ELSIF kind = 'login_failed' THEN
    v_user := (payload ->> 'user_id')::uuid;
    IF v_user IS NOT NULL AND coalesce((payload ->> 'count')::boolean, false) THEN
      v_threshold := greatest((payload ->> 'threshold')::integer, 1);
      v_base := greatest((payload ->> 'base_delay')::double precision, 1);
      v_max := greatest((payload ->> 'max_delay')::double precision, v_base);
      -- The streak is forgotten after a quiet period of twice the longest
      -- lockout.  INSERT ... SELECT: a user deleted (or not yet committed)
      -- meanwhile simply gets no row.
      INSERT INTO authctx.login_throttle AS t (user_id, failures, last_failure_at)
      SELECT u.id, 1, v_now FROM authctx.users u WHERE u.id = v_user
      ON CONFLICT (user_id) DO UPDATE
        SET failures = CASE
                         WHEN t.last_failure_at < v_now - make_interval(secs => 2 * v_max)
                         THEN 1
                         ELSE t.failures + 1
                       END,
            last_failure_at = v_now
      RETURNING t.failures INTO v_failures;
      IF v_failures >= v_threshold THEN
        -- bounded exponential back-off: base * 2^(failures - threshold), at most max
        v_locked := v_now + make_interval(secs =>
                      least(v_base * power(2::double precision,
                                           least(v_failures - v_threshold, 30)),
                            v_max));
        UPDATE authctx.login_throttle t SET locked_until = v_locked
         WHERE t.user_id = v_user;
      END IF;
    END IF;
    v_result := jsonb_strip_nulls(jsonb_build_object('failures', v_failures,
                                                     'locked_until', v_locked));
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
    VALUES (v_now, 'login_failed', v_user, v_role,
            jsonb_strip_nulls(jsonb_build_object(
              'reason', payload ->> 'reason',
              'method', payload ->> 'method',
              'failures', v_failures,
              'locked_until', v_locked)));

  ELSIF kind = 'webauthn_failed' THEN
    -- a failed passkey attempt: spend its challenge, mark a suspected clone,
    -- and audit (as login_failed for a login)
    IF payload ->> 'challenge' IS NOT NULL THEN
      DELETE FROM authctx.webauthn_challenges c
       WHERE c.challenge = decode(payload ->> 'challenge', 'hex');
    END IF;
    IF coalesce((payload ->> 'clone')::boolean, false) THEN
      UPDATE authctx.webauthn_credentials c
         SET clone_suspected_at = coalesce(c.clone_suspected_at, v_now)
       WHERE c.credential_id = decode(payload ->> 'credential_id', 'hex');
      INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
      VALUES (v_now, 'webauthn_clone_suspected', (payload ->> 'user_id')::uuid, v_role,
              jsonb_build_object('credential_id', payload ->> 'credential_id',
                                 'stored_count', (payload ->> 'stored_count')::bigint,
                                 'presented_count', (payload ->> 'presented_count')::bigint));
    END IF;
    IF coalesce((payload ->> 'login')::boolean, false) THEN
      v_result := authctx._autonomous_apply('login_failed', payload);
    ELSE
      INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
      VALUES (v_now, 'webauthn_failed', (payload ->> 'user_id')::uuid, v_role,
              jsonb_build_object('reason', payload ->> 'reason',
                                 'credential_id', payload ->> 'credential_id'));
    END IF;

  ELSIF kind = 'refresh_reuse' THEN
    v_family := (payload ->> 'family_id')::uuid;
    IF v_family IS NULL THEN
      RAISE EXCEPTION 'refresh_reuse record without a family' USING ERRCODE = '22023';
    END IF;
    SELECT f.sessions INTO v_sessions FROM authctx._revoke_family(v_family, v_now) f;
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
    VALUES (v_now, 'refresh_reuse',
            (payload ->> 'user_id')::uuid,
            (payload ->> 'tenant_id')::uuid,
            (payload ->> 'session_id')::uuid,
            v_role,
            jsonb_build_object(
              'family_id', v_family,
              'refresh_token_id', payload ->> 'token_id',
              'sessions_revoked', v_sessions));
    v_result := jsonb_build_object('sessions_revoked', v_sessions);

  ELSIF kind = 'seen' THEN
    -- Last-seen (sessions) and last-used (API keys) times, moved forward
    -- only.  The payload is parsed once per kind.  The write never waits for
    -- a row lock: a row that anyone else holds (a revocation, cleanup,
    -- another batch) is skipped and keeps its time, which is a hint at most
    -- an interval behind, so this transaction can take part in no deadlock.
    -- Each row is locked through its primary key (the locking subquery in
    -- LATERAL keeps the plan a nested loop of index probes; a join would
    -- let the planner hash the whole table) and then updated by its ctid.
    FOREACH v_kind IN ARRAY ARRAY['s', 'k'] LOOP
      SELECT coalesce(array_agg(n.id ORDER BY n.id), '{}'),
             coalesce(array_agg(n.at ORDER BY n.id), '{}')
        INTO v_ids, v_ats
        FROM (SELECT (e ->> 'id')::uuid AS id,
                     max(to_timestamp((e ->> 't')::numeric / 1000000)) AS at
                FROM jsonb_array_elements(payload -> 'entries') e
               WHERE e ->> 'k' = v_kind
               GROUP BY 1) n;
      CONTINUE WHEN cardinality(v_ids) = 0;
      IF v_kind = 's' THEN
        WITH l AS (
          SELECT x.tid, m.at
            FROM unnest(v_ids, v_ats) m(id, at)
            CROSS JOIN LATERAL (
              SELECT s.ctid AS tid
                FROM authctx.sessions s
               WHERE s.id = m.id AND s.last_seen_at < m.at
                 FOR NO KEY UPDATE SKIP LOCKED) x)
        UPDATE authctx.sessions s
           SET last_seen_at = l.at
          FROM l
         WHERE s.ctid = l.tid;
      ELSE
        WITH l AS (
          SELECT x.tid, m.at
            FROM unnest(v_ids, v_ats) m(id, at)
            CROSS JOIN LATERAL (
              SELECT k.ctid AS tid
                FROM authctx.api_keys k
               WHERE k.id = m.id AND (k.last_used_at IS NULL OR k.last_used_at < m.at)
                 FOR NO KEY UPDATE SKIP LOCKED) x)
        UPDATE authctx.api_keys k
           SET last_used_at = l.at
          FROM l
         WHERE k.ctid = l.tid;
      END IF;
    END LOOP;

  ELSE
    RAISE EXCEPTION 'unknown autonomous record kind' USING ERRCODE = '22023';
  END IF;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._autonomous_apply(text, jsonb) IS
  'internal: what the autonomous worker runs in its own transaction (audit, login_failed, webauthn_failed, refresh_reuse, seen); returns what the record did';
REVOKE ALL ON FUNCTION authctx._autonomous_apply(text, jsonb) FROM PUBLIC;
