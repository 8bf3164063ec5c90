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

-- session: the session layer under concurrency and over time (issue 18) --
-- a per-user revocation stamp that wins over logins and refreshes in
-- flight; one lock order (user, membership, family, refresh tokens,
-- sessions); logout of any session token ends its family; cleanup keeps the
-- session rows of families that can still refresh and never makes a
-- revocation wait; reuse detection by 64-bit xid; emails compared by one
-- Unicode normalisation; refresh checks the membership.

-- users: the revocation stamp (columns go last, as in src/sql/20_tables.sql)
ALTER TABLE authctx.users
  ADD COLUMN sessions_revoked_before timestamptz,
  ADD COLUMN sessions_revoked_except uuid;
-- refresh tokens: the transaction that spent each one
ALTER TABLE authctx.refresh_tokens ADD COLUMN spent_xid xid8;

-- emails: one key for uniqueness and lookup
CREATE FUNCTION authctx._email_key(email text) RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_email_key'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._email_key(text) IS
  'internal: the normalised form of an email that uniqueness and lookup compare (NFC, Unicode default case folding, NFC; UTF-8 bytes)';

REVOKE ALL ON FUNCTION authctx._email_key(text) FROM PUBLIC;

-- Emails that 0.1.0 told apart (lower() under the database's collation,
-- no Unicode normalisation) but that are one address now: nothing is
-- merged or dropped silently; the update stops and names the users.
DO $upgrade$
DECLARE
  v_groups text;
  v_bad    text;
  v_user   record;
BEGIN
  FOR v_user IN SELECT u.id, u.email FROM authctx.users u LOOP
    BEGIN
      PERFORM authctx._email_key(v_user.email);
    EXCEPTION WHEN character_not_in_repertoire THEN
      v_bad := concat_ws(', ', v_bad, v_user.id::text);
    END;
  END LOOP;
  IF v_bad IS NOT NULL THEN
    RAISE EXCEPTION 'some user emails are not valid UTF-8'
      USING ERRCODE = 'character_not_in_repertoire',
            DETAIL = 'Users: ' || v_bad || '.',
            HINT = 'Correct their emails with authctx.set_email, then run ALTER EXTENSION authctx UPDATE again.';
  END IF;
  SELECT string_agg(g.ids, '; ') INTO v_groups
    FROM (SELECT string_agg(u.id::text, ', ' ORDER BY u.created_at, u.id) AS ids
            FROM authctx.users u
           GROUP BY authctx._email_key(u.email)
          HAVING count(*) > 1) g;
  IF v_groups IS NOT NULL THEN
    RAISE EXCEPTION 'some users share an email once emails are compared after Unicode normalization and case folding'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Users sharing an email (one group per semicolon): ' || v_groups || '.',
            HINT = 'Give all but one user of each group another email with authctx.set_email (or merge them), then run ALTER EXTENSION authctx UPDATE again.';
  END IF;
END
$upgrade$;
DROP INDEX authctx.users_email_lower_key;
CREATE UNIQUE INDEX users_email_key ON authctx.users (authctx._email_key(email));
COMMENT ON TABLE authctx.users IS 'users; email unique by authctx._email_key (Unicode NFC and case folding); disabled_at set when disabled; sessions_revoked_before: sessions and refresh tokens issued until then are revoked (except family sessions_revoked_except)';

-- the per-database secret that keys the per-account lock
CREATE TABLE authctx.database_secret (
  id      boolean PRIMARY KEY DEFAULT true CHECK (id),
  secret  bytea NOT NULL CHECK (pg_catalog.octet_length(secret) OPERATOR(pg_catalog.>=) 32)
);
INSERT INTO authctx.database_secret (secret)
SELECT pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                         OPERATOR(pg_catalog.||) pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));
COMMENT ON TABLE authctx.database_secret IS 'one random per-database key (keys the per-account lock); never dumped';
REVOKE ALL ON TABLE authctx.database_secret FROM PUBLIC;

-- the cache hears of a new stamp (src/sql/65_cache.sql)
DROP TRIGGER cache_invalidate_update ON authctx.users;
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.users FOR EACH ROW
  WHEN ((OLD.id, OLD.disabled_at, OLD.sessions_revoked_before, OLD.sessions_revoked_except)
        IS DISTINCT FROM
        (NEW.id, NEW.disabled_at, NEW.sessions_revoked_before, NEW.sessions_revoked_except))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'id');
ALTER TABLE authctx.users ENABLE ALWAYS TRIGGER cache_invalidate_update;

-- reuse detection no longer reads 32-bit xmin
DROP FUNCTION authctx._written_by_us(xid);

-- identity (src/sql/40_identity.sql)
CREATE FUNCTION authctx._keyed_hash64(data bytea, key bytea) RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_keyed_hash64'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._keyed_hash64(bytea, bytea) IS
  'internal: the first 64 bits of keyed BLAKE2b of data (an advisory lock key)';

REVOKE ALL ON FUNCTION authctx._keyed_hash64(bytea, bytea) FROM PUBLIC;

CREATE FUNCTION authctx._lock_account(email text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lock bigint;
BEGIN
  SELECT authctx._keyed_hash64('authctx account '::bytea
                                 OPERATOR(pg_catalog.||)
                                 coalesce(authctx._email_key(_lock_account.email), ''::bytea),
                               s.secret)
    INTO v_lock
    FROM authctx.database_secret s;
  IF v_lock IS NULL THEN
    RAISE EXCEPTION 'authctx.database_secret is empty'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Reinstall the extension, or insert a random 32-byte secret.';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(v_lock);
END
$$;
COMMENT ON FUNCTION authctx._lock_account(text) IS
  'internal: the per-account lock of password attempts (a keyed hash of the email''s key), for known and unknown emails alike';

REVOKE ALL ON FUNCTION authctx._lock_account(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx._check_email(email text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF _check_email.email IS NULL
     OR pg_catalog.length(_check_email.email) OPERATOR(pg_catalog.>) 254
     OR _check_email.email OPERATOR(pg_catalog.!~) '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$'
     OR authctx._email_key(_check_email.email) IS NULL THEN
    RAISE EXCEPTION 'invalid email address'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'An email address has exactly one "@" with text on both sides, no whitespace, and at most 254 characters.';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._check_email(text) IS
  'internal: raises 22023 unless the text is a plausible email address';

CREATE OR REPLACE FUNCTION authctx.create_user(email text, display_name text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  new_id uuid;
BEGIN
  PERFORM authctx._check_email(create_user.email);

  INSERT INTO authctx.users AS u (email, display_name)
  VALUES (create_user.email, create_user.display_name)
  ON CONFLICT DO NOTHING
  RETURNING u.id INTO new_id;

  IF new_id IS NULL THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END IF;
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION authctx.create_user(text, text) IS
  'create a user; email unique after Unicode normalization and case folding (23505), invalid email 22023; returns its id';

CREATE OR REPLACE FUNCTION authctx.set_email(user_id uuid, email text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._check_email(set_email.email);
  PERFORM authctx._require_user(set_email.user_id);
  BEGIN
    UPDATE authctx.users AS u
       SET email = set_email.email
     WHERE u.id OPERATOR(pg_catalog.=) set_email.user_id;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END;
END
$$;
COMMENT ON FUNCTION authctx.set_email(uuid, text) IS
  'change a user''s email (unique after Unicode normalization and case folding); sessions are untouched';

CREATE OR REPLACE FUNCTION authctx.disable_user(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
BEGIN
  PERFORM authctx._require_user(disable_user.user_id);
  UPDATE authctx.users AS u
     SET disabled_at = pg_catalog.clock_timestamp()
   WHERE u.id OPERATOR(pg_catalog.=) disable_user.user_id
     AND u.disabled_at IS NULL;
  -- A revocation: every session and refresh token issued until now is
  -- revoked for good (enable_user brings none back), those of a login or
  -- refresh in flight included.  API keys are only refused while disabled.
  IF FOUND THEN
    PERFORM authctx._revoke_user_sessions(disable_user.user_id, NULL, 'disable_user');
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.disable_user(uuid) IS
  'disable a user: no login, every session and refresh token revoked for good, API keys refused while disabled (idempotent)';

CREATE OR REPLACE FUNCTION authctx.enable_user(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(enable_user.user_id);
  UPDATE authctx.users AS u
     SET disabled_at = NULL
   WHERE u.id OPERATOR(pg_catalog.=) enable_user.user_id
     AND u.disabled_at IS NOT NULL;
END
$$;
COMMENT ON FUNCTION authctx.enable_user(uuid) IS
  'enable a disabled user again: logins and API keys work again, sessions revoked by the disable stay revoked (idempotent)';

CREATE OR REPLACE FUNCTION authctx.remove_member(tenant text, user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  tid uuid;
BEGIN
  tid := authctx._require_tenant(remove_member.tenant);
  PERFORM authctx._require_user(remove_member.user_id);

  -- Sessions stay: auth_begin refuses them for this tenant from now on,
  -- and refresh refuses their families (a login or refresh in flight holds
  -- the membership FOR SHARE: we wait for it, then it is refused too).
  DELETE FROM authctx.memberships AS m
   WHERE m.tenant_id OPERATOR(pg_catalog.=) tid
     AND m.user_id OPERATOR(pg_catalog.=) remove_member.user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % is not a member of tenant "%"', remove_member.user_id, remove_member.tenant
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.remove_member(text, uuid) IS
  'remove a user from a tenant; 42704 if not a member';

CREATE OR REPLACE FUNCTION authctx.set_password(user_id uuid, password text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  new_hash text;
  keep     uuid;
  revoked  integer;
BEGIN
  IF set_password.password IS NULL THEN
    RAISE EXCEPTION 'password must not be null'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM authctx._require_user(set_password.user_id);
  -- hash first (slow), then lock the user's row (lock order, 2): logins of
  -- this user wait from here until we commit, and a login in flight holds
  -- the row already and will have its session revoked by our stamp
  new_hash := authctx._password_hash(set_password.password);
  PERFORM 1 FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) set_password.user_id
     FOR NO KEY UPDATE;

  INSERT INTO authctx.password_credentials AS c (user_id, hash, updated_at)
  VALUES (set_password.user_id, new_hash, pg_catalog.clock_timestamp())
  ON CONFLICT ON CONSTRAINT password_credentials_pkey DO UPDATE
     SET hash = excluded.hash, updated_at = excluded.updated_at;

  -- Revoke the user's other sessions: every one except the session this
  -- transaction authenticated with, when it belongs to the same user.
  IF authctx.user_id() OPERATOR(pg_catalog.=) set_password.user_id THEN
    keep := authctx.session_id();
  END IF;
  -- (authctx._revoke_user_sessions, 50_session.sql, keeps that session's
  -- login family, and stamps the user so that what a login or refresh in
  -- flight issues is revoked too)
  revoked := authctx._revoke_user_sessions(set_password.user_id, keep, 'password_changed');

  PERFORM authctx._audit('password_changed', set_password.user_id, NULL, keep,
                         pg_catalog.jsonb_build_object('revoked_sessions', revoked));
END
$$;
COMMENT ON FUNCTION authctx.set_password(uuid, text) IS
  'set a user''s password (argon2id; length policy 22023) and revoke the user''s other sessions';

CREATE OR REPLACE FUNCTION authctx.verify_password(email text, password text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  uid      uuid;
  disabled boolean;
  old_hash text;
BEGIN
  IF verify_password.password IS NULL THEN
    RETURN NULL;
  END IF;

  SELECT u.id, u.disabled_at IS NOT NULL, c.hash
    INTO uid, disabled, old_hash
    FROM authctx.users u
    LEFT JOIN authctx.password_credentials c
      ON c.user_id OPERATOR(pg_catalog.=) u.id
   WHERE authctx._email_key(u.email) OPERATOR(pg_catalog.=) authctx._email_key(verify_password.email);

  -- Unknown email or no password: spend the same time, then fail.
  IF old_hash IS NULL THEN
    PERFORM authctx._password_dummy_verify(verify_password.password);
    RETURN NULL;
  END IF;
  IF NOT authctx._password_verify(old_hash, verify_password.password) THEN
    RETURN NULL;
  END IF;
  -- Checked only after the password, so that timing tells nothing.
  IF disabled THEN
    RETURN NULL;
  END IF;

  -- Settings changed since the hash was made: rehash now that we know the
  -- password, unless this transaction cannot write (read-only, standby).
  IF authctx._password_needs_rehash(old_hash)
     AND pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'off' THEN
    UPDATE authctx.password_credentials AS c
       SET hash = authctx._password_rehash(verify_password.password),
           updated_at = pg_catalog.clock_timestamp()
     WHERE c.user_id OPERATOR(pg_catalog.=) uid
       AND c.hash OPERATOR(pg_catalog.=) old_hash;
  END IF;
  RETURN uid;
END
$$;
COMMENT ON FUNCTION authctx.verify_password(text, text) IS
  'id of the user with this email (compared by authctx._email_key) and password, or NULL (unknown email, disabled user, no or wrong password); rehashes when the parameters changed';

-- sessions (src/sql/50_session.sql): new helpers, then what changed
CREATE FUNCTION authctx._revoked_by_user(p_created timestamptz, p_family uuid,
                                         p_before timestamptz, p_except uuid)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT p_before IS NOT NULL
     AND (p_created IS NULL OR p_created OPERATOR(pg_catalog.<=) p_before)
     AND (p_except IS NULL OR p_family IS NULL OR p_family OPERATOR(pg_catalog.<>) p_except);
$$;
COMMENT ON FUNCTION authctx._revoked_by_user(timestamptz, uuid, timestamptz, uuid) IS
  'internal: whether a session or refresh token (issue time, family) is revoked by its user''s revocation stamp';

CREATE FUNCTION authctx._issue_time(p_user_id uuid) RETURNS timestamptz
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(max(greatest(clock_timestamp(), u.sessions_revoked_before + interval '1 microsecond')),
                  clock_timestamp())
    FROM authctx.users u WHERE u.id = p_user_id;
$$;
COMMENT ON FUNCTION authctx._issue_time(uuid) IS
  'internal: issue time of a new session or refresh token: the wall clock, and after the user''s revocation stamp';

CREATE FUNCTION authctx._cleanup_margin() RETURNS interval
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN interval '1 hour' + authctx._setting('authctx.last_seen_interval');
END
$$;
COMMENT ON FUNCTION authctx._cleanup_margin() IS
  'internal: how long revoked, expired and idle rows stay before cleanup() deletes them';

CREATE FUNCTION authctx._family_lock_key(p_family_id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT ('x' OPERATOR(pg_catalog.||)
          pg_catalog.translate(pg_catalog.left(p_family_id::text, 18), '-', ''))::bit(64)::bigint;
$$;
COMMENT ON FUNCTION authctx._family_lock_key(uuid) IS 'internal: advisory lock key of a login family';

CREATE FUNCTION authctx._lock_family(p_family_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(authctx._family_lock_key(p_family_id));
END
$$;
COMMENT ON FUNCTION authctx._lock_family(uuid) IS
  'internal: take the transaction lock of a login family (lock order: user, membership, family, refresh tokens, sessions)';

CREATE FUNCTION authctx._holds_family_lock(p_family_id uuid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l, (SELECT authctx._family_lock_key(p_family_id) AS k) f
     WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
       AND l.classid = ((f.k >> 32) & 4294967295)::oid
       AND l.objid = (f.k & 4294967295)::oid
       AND l.objsubid = 1);
$$;
COMMENT ON FUNCTION authctx._holds_family_lock(uuid) IS 'internal: whether this transaction holds a login family''s lock';

CREATE FUNCTION authctx._revoke_family_rows(p_family_id uuid, p_at timestamptz,
                                            OUT sessions integer, OUT tokens integer,
                                            OUT live integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_half  interval := authctx._cleanup_margin() / 2;
  v_idle  interval := authctx._setting('authctx.session_idle_timeout');
  v_idled integer;
BEGIN
  UPDATE authctx.refresh_tokens rt SET revoked_at = p_at
   WHERE rt.family_id = p_family_id AND rt.revoked_at IS NULL
     AND rt.expires_at > p_at - v_half;
  GET DIAGNOSTICS tokens = ROW_COUNT;
  WITH r AS (
    UPDATE authctx.sessions s SET revoked_at = p_at
     WHERE s.family_id = p_family_id AND s.revoked_at IS NULL
       AND s.expires_at > p_at - v_half
       AND (v_idle = '0' OR s.last_seen_at + v_idle > p_at - v_half)
    RETURNING s.expires_at, s.last_seen_at)
  SELECT count(*),
         count(*) FILTER (WHERE r.expires_at > p_at
                            AND (v_idle = '0' OR r.last_seen_at + v_idle > p_at))
    INTO sessions, live
    FROM r;
  IF v_idle > '0' THEN
    WITH r AS (
      UPDATE authctx.sessions s SET revoked_at = p_at
       WHERE s.ctid = ANY (ARRAY(
               SELECT i.ctid FROM authctx.sessions i
                WHERE i.family_id = p_family_id AND i.revoked_at IS NULL
                  AND i.expires_at > p_at - v_half
                  AND i.last_seen_at + v_idle <= p_at - v_half
                  FOR NO KEY UPDATE OF i SKIP LOCKED))
      RETURNING 1)
    SELECT count(*) INTO v_idled FROM r;
    sessions := sessions + v_idled;
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family_rows(uuid, timestamptz) IS
  'internal: revoke a login family''s rows for a caller holding its locks; returns sessions, tokens and live sessions revoked';

CREATE FUNCTION authctx._lock_membership(p_tenant_id uuid, p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM 1 FROM authctx.memberships m
    WHERE m.tenant_id = p_tenant_id AND m.user_id = p_user_id FOR SHARE;
  RETURN FOUND;
END
$$;
COMMENT ON FUNCTION authctx._lock_membership(uuid, uuid) IS
  'internal: whether the user is a member of the tenant, the membership locked FOR SHARE';

CREATE OR REPLACE FUNCTION authctx._revoke_family(p_family_id uuid, p_at timestamptz,
                                       OUT sessions integer, OUT tokens integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user uuid;
BEGIN
  sessions := 0;
  tokens := 0;
  SELECT rt.user_id INTO v_user FROM authctx.refresh_tokens rt
   WHERE rt.family_id = p_family_id LIMIT 1;
  IF v_user IS NULL THEN
    SELECT s.user_id INTO v_user FROM authctx.sessions s
     WHERE s.family_id = p_family_id LIMIT 1;
  END IF;
  IF v_user IS NULL THEN
    RETURN;
  END IF;
  PERFORM 1 FROM authctx.users u WHERE u.id = v_user FOR SHARE;
  PERFORM authctx._lock_family(p_family_id);
  SELECT r.sessions, r.tokens INTO sessions, tokens
    FROM authctx._revoke_family_rows(p_family_id, p_at) r;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family(uuid, timestamptz) IS
  'internal: revoke a login family (sessions and refresh tokens); returns how many of each it revoked';

CREATE OR REPLACE FUNCTION authctx._revoke_user_sessions(p_user_id uuid, p_except uuid, p_reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz;
  v_stamp  timestamptz;
  v_keep   uuid;
  v_family uuid;
  v_live   integer;
  v_total  integer := 0;
BEGIN
  PERFORM 1 FROM authctx.users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  IF p_except IS NOT NULL THEN
    SELECT s.family_id INTO v_keep FROM authctx.sessions s
     WHERE s.id = p_except AND s.user_id = p_user_id;
  END IF;
  -- The clock is read only now that we hold the row: whoever issued rows
  -- before us has committed them, with earlier times.  Nor is the stamp
  -- earlier than the newest of them we can see (a clock that stepped back).
  v_now := clock_timestamp();
  v_stamp := greatest(v_now,
                      (SELECT max(s.created_at) FROM authctx.sessions s WHERE s.user_id = p_user_id),
                      (SELECT max(rt.created_at) FROM authctx.refresh_tokens rt WHERE rt.user_id = p_user_id));
  UPDATE authctx.users u
     SET sessions_revoked_before = v_stamp, sessions_revoked_except = v_keep
   WHERE u.id = p_user_id;
  FOR v_family IN
    SELECT s.family_id FROM authctx.sessions s
     WHERE s.user_id = p_user_id AND s.revoked_at IS NULL
    UNION
    SELECT rt.family_id FROM authctx.refresh_tokens rt
     WHERE rt.user_id = p_user_id AND rt.revoked_at IS NULL
  LOOP
    CONTINUE WHEN v_family IS NOT DISTINCT FROM v_keep;
    IF current_setting('transaction_isolation') = 'read committed' THEN
      SELECT r.live INTO v_live FROM authctx._revoke_family_rows(v_family, v_now) r;
    ELSE
      -- A login or refresh that committed after our snapshot changed this
      -- family (40001 on its rows).  What it issued is revoked by the stamp
      -- all the same; only its rows stay unmarked.
      BEGIN
        SELECT r.live INTO v_live FROM authctx._revoke_family_rows(v_family, v_now) r;
      EXCEPTION WHEN serialization_failure THEN
        v_live := 0;
      END;
    END IF;
    v_total := v_total + v_live;
  END LOOP;
  IF v_total > 0 THEN
    PERFORM authctx._audit('session_revoked', p_user_id, NULL, NULL,
                           jsonb_build_object('reason', p_reason, 'sessions', v_total));
  END IF;
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx._revoke_user_sessions(uuid, uuid, text) IS
  'internal: revoke a user''s sessions and refresh tokens (stamp and rows) except one session''s family; returns live sessions revoked';

CREATE OR REPLACE FUNCTION authctx._member_tenant(p_user_id uuid, p_tenant text, p_required boolean)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tenant  uuid;
  v_tenants uuid[];
BEGIN
  IF p_tenant IS NULL THEN
    IF p_required THEN
      RAISE EXCEPTION 'tenant must not be null' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(x.tenant_id) INTO v_tenants
      FROM (SELECT m.tenant_id FROM authctx.memberships m
             WHERE m.user_id = p_user_id FOR SHARE) x;
    RETURN CASE WHEN cardinality(v_tenants) = 1 THEN v_tenants[1] END;
  END IF;
  v_tenant := authctx._require_tenant(p_tenant);
  IF NOT authctx._lock_membership(v_tenant, p_user_id) THEN
    RAISE EXCEPTION 'user is not a member of this tenant' USING ERRCODE = '42501';
  END IF;
  RETURN v_tenant;
END
$$;
COMMENT ON FUNCTION authctx._member_tenant(uuid, text, boolean) IS 'internal: tenant for a new session or API key, checked for membership';

CREATE OR REPLACE FUNCTION authctx._enabled_user(p_user_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._require_user(p_user_id);
  PERFORM 1 FROM authctx.users u
    WHERE u.id = p_user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user is disabled' USING ERRCODE = '55000';
  END IF;
  RETURN p_user_id;
END
$$;
COMMENT ON FUNCTION authctx._enabled_user(uuid) IS 'internal: check that a user exists (42704) and is enabled (55000), and lock it';

CREATE OR REPLACE FUNCTION authctx._new_pair(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                  p_parent_id uuid, p_metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_session authctx.token := authctx._token_new('session');
  v_refresh authctx.token := authctx._token_new('refresh');
  v_now     timestamptz := authctx._issue_time(p_user_id);
  v_expires timestamptz := v_now + authctx._setting('authctx.session_lifetime');
  v_result  authctx.login_result;
BEGIN
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata)
  VALUES (authctx._token_id(v_session), p_user_id, p_tenant_id, p_family_id,
          authctx._token_verifier(v_session), v_now, v_now, v_expires,
          coalesce(p_metadata, '{}'::jsonb));
  INSERT INTO authctx.refresh_tokens (id, family_id, session_id, user_id, tenant_id,
                                      parent_id, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_refresh), p_family_id, authctx._token_id(v_session),
          p_user_id, p_tenant_id, p_parent_id, authctx._token_verifier(v_refresh),
          v_now, v_now + authctx._setting('authctx.refresh_lifetime'));
  v_result := ROW(v_session, v_refresh, authctx._token_id(v_session), p_tenant_id, v_expires);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb) IS 'internal: issue a session and refresh token in a family';

CREATE OR REPLACE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_family uuid := gen_random_uuid();
  v_result authctx.login_result;
BEGIN
  PERFORM 1 FROM authctx.users u
    WHERE u.id = _issue_session.user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  IF _issue_session.tenant_id IS NOT NULL
     AND NOT authctx._lock_membership(_issue_session.tenant_id, _issue_session.user_id) THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  v_result := authctx._new_pair(_issue_session.user_id, _issue_session.tenant_id, v_family,
                                NULL, _issue_session.metadata);
  PERFORM authctx._audit('login', _issue_session.user_id, _issue_session.tenant_id,
                         v_result.session_id,
                         jsonb_build_object('method', _issue_session.method, 'family_id', v_family));
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._issue_session(uuid, uuid, text, jsonb) IS
  'internal: create a session and refresh token in a new family for an authenticated user, audit login';

CREATE FUNCTION authctx._refresh_lock(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                      p_created timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user authctx.users;
BEGIN
  SELECT * INTO v_user FROM authctx.users u WHERE u.id = p_user_id FOR SHARE;
  IF NOT FOUND OR v_user.disabled_at IS NOT NULL
     OR authctx._revoked_by_user(p_created, p_family_id, v_user.sessions_revoked_before,
                                 v_user.sessions_revoked_except) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  IF p_tenant_id IS NOT NULL AND NOT authctx._lock_membership(p_tenant_id, p_user_id) THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._lock_family(p_family_id);
END
$$;
COMMENT ON FUNCTION authctx._refresh_lock(uuid, uuid, uuid, timestamptz) IS
  'internal: lock user, membership and family for a refresh, and check that the family may still refresh (28000)';

CREATE FUNCTION authctx._refresh_pair(p_token authctx.refresh_tokens, p_grace boolean)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_meta   jsonb;
  v_result authctx.login_result;
BEGIN
  SELECT s.metadata INTO v_meta FROM authctx.sessions s
   WHERE s.family_id = p_token.family_id
   ORDER BY s.id = p_token.session_id DESC, s.created_at DESC
   LIMIT 1;
  v_result := authctx._new_pair(p_token.user_id, p_token.tenant_id, p_token.family_id,
                                p_token.id, v_meta);
  PERFORM authctx._audit('refresh', p_token.user_id, p_token.tenant_id, v_result.session_id,
                         CASE WHEN p_grace
                              THEN jsonb_build_object('family_id', p_token.family_id, 'grace', true)
                              ELSE jsonb_build_object('family_id', p_token.family_id) END);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._refresh_pair(authctx.refresh_tokens, boolean) IS
  'internal: issue the new pair of a refresh in the spent token''s family, with its metadata, and audit it';

CREATE OR REPLACE FUNCTION authctx.login(email text, password text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key      bytea := authctx._email_key(login.email);
  v_user     uuid;
  v_disabled timestamptz;
  v_failures integer;
  v_locked   timestamptz;
  v_verified uuid;
  v_tenant   uuid;
  v_reason   text;
  v_counts   boolean := false;
  v_base     interval;
  v_max      interval;
BEGIN
  -- A read-only transaction (a standby, BEGIN READ ONLY) can issue nothing
  -- and record no failure: refuse before any password is tried, so that it
  -- is no place to test guesses without the lockout counting them.
  IF current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- one password attempt per email at a time, known or not (lock order, 1)
  PERFORM authctx._lock_account(login.email);
  -- the user's row, FOR SHARE before the password is read (lock order, 2):
  -- a set_password, disable_user or revoke_user_sessions either committed
  -- before (we read its results, or fail with 40001 in REPEATABLE READ) or
  -- waits for us and then revokes what we issue
  IF v_key IS NOT NULL THEN
    SELECT u.id, u.disabled_at INTO v_user, v_disabled
      FROM authctx.users u WHERE authctx._email_key(u.email) = v_key
       FOR SHARE;
  END IF;
  IF v_user IS NOT NULL THEN
    SELECT t.failures, t.locked_until INTO v_failures, v_locked
      FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;

  IF v_locked > clock_timestamp() THEN
    PERFORM authctx._password_dummy_verify(password);
    v_reason := 'locked';
  ELSE
    -- hashes for an unknown email too
    v_verified := authctx.verify_password(email, password);
    IF v_user IS NULL THEN
      v_reason := 'unknown_user';
    ELSIF v_verified IS DISTINCT FROM v_user THEN
      IF v_disabled IS NOT NULL THEN
        v_reason := 'disabled';
      ELSE
        v_reason := 'bad_password';
        v_counts := true;
      END IF;
    ELSIF v_disabled IS NOT NULL THEN
      v_reason := 'disabled';
    ELSIF tenant IS NOT NULL THEN
      v_tenant := authctx._resolve_tenant(tenant);
      IF v_tenant IS NULL OR NOT authctx._lock_membership(v_tenant, v_user) THEN
        v_reason := 'not_member';
      END IF;
    ELSE
      -- the only membership, or none
      v_tenant := authctx._member_tenant(v_user, NULL, false);
    END IF;
  END IF;

  IF v_reason IS NOT NULL THEN
    -- our settings travel with the record (the worker does not see them)
    v_base := authctx._setting('authctx.lockout_base_delay');
    v_max := authctx._setting('authctx.lockout_max_delay');
    -- in a transaction of its own: our caller's rollback must not undo it;
    -- a failure that cannot be recorded fails closed
    IF NOT coalesce(authctx._autonomous('login_failed', jsonb_build_object(
      'user_id', v_user,
      'reason', v_reason,
      'method', 'password',
      'count', v_counts,
      'threshold', current_setting('authctx.lockout_threshold')::integer,
      'base_delay', extract(epoch FROM v_base),
      'max_delay', extract(epoch FROM v_max),
      'db_role', session_user)), false) THEN
      RAISE EXCEPTION 'could not record a failed login' USING ERRCODE = '55000';
    END IF;
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;

  IF v_failures IS NOT NULL THEN
    DELETE FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'password', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login(text, text, text) IS
  'password login: a session and a refresh token; any failure raises 28P01 with one generic message and is counted and audited in a transaction of its own';

CREATE OR REPLACE FUNCTION authctx.refresh(refresh_token text) RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok    authctx.token := authctx._parse_token(refresh_token, 'refresh');
  v_id     uuid;
  v_now    timestamptz := clock_timestamp();
  v_row    authctx.refresh_tokens;
  v_spent  boolean;
  v_grace  interval;
BEGIN
  IF v_tok IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  v_id := authctx._token_id(v_tok);

  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.revoked_at IS NOT NULL
     OR v_row.expires_at <= v_now THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Lock (user, membership, family) and spend.  Holding the family lock,
  -- nobody else changes the token: the UPDATE sees its latest state (or, in
  -- REPEATABLE READ, fails with 40001 when it changed after our snapshot).
  -- When it is already spent, the subtransaction is rolled back: that
  -- releases every lock taken here, and the reuse path below holds none.
  BEGIN
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = v_now, spent_xid = pg_current_xact_id()
     WHERE rt.id = v_id AND rt.spent_at IS NULL AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'refresh token not spendable' USING ERRCODE = 'AX001';
    END IF;
    v_spent := true;
  EXCEPTION WHEN SQLSTATE 'AX001' THEN
    v_spent := false;
  END;
  IF v_spent THEN
    -- rotation: the session issued with this refresh token ends here
    UPDATE authctx.sessions s SET revoked_at = v_now
     WHERE s.id = v_row.session_id AND s.revoked_at IS NULL;
    RETURN authctx._refresh_pair(v_row, false);
  END IF;

  -- Spent (or revoked) by someone else.  We hold no lock on the family.
  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  v_now := clock_timestamp();
  IF NOT FOUND OR v_row.revoked_at IS NOT NULL OR v_row.spent_at IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Spent earlier in this very transaction: that spend dies with the error
  -- we raise, and the worker would wait for our locks.  Not a reuse.
  IF v_row.spent_xid = pg_current_xact_id_if_assigned() THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  v_grace := authctx._setting('authctx.refresh_reuse_grace');
  IF v_grace > '0' AND v_now - v_row.spent_at <= v_grace THEN
    -- A client racing itself.  Lock as a spend does and re-spend the token:
    -- a real update, which a concurrent family revocation either waits for
    -- (then revokes our rows too) or has already made impossible.
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = rt.spent_at
     WHERE rt.id = v_id AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
    END IF;
    RETURN authctx._refresh_pair(v_row, true);
  END IF;

  -- Reuse of a spent token: revoke the family in a transaction of its own.
  -- Not from a transaction that holds the family's lock already (it
  -- refreshed or logged out in this family earlier): the worker would wait
  -- for it, and whatever it revoked itself dies with our error.
  IF authctx._holds_family_lock(v_row.family_id) THEN
    RAISE EXCEPTION 'cannot revoke a login family from a transaction that holds its lock'
      USING ERRCODE = '55000',
            DETAIL = 'A spent refresh token was presented again in a transaction that already changed its login family.',
            HINT = 'Present each refresh token in a transaction of its own.';
  END IF;
  IF NOT coalesce(authctx._autonomous('refresh_reuse', jsonb_build_object(
    'family_id', v_row.family_id,
    'user_id', v_row.user_id,
    'tenant_id', v_row.tenant_id,
    'session_id', v_row.session_id,
    'token_id', v_id,
    'db_role', session_user)), false) THEN
    RAISE EXCEPTION 'could not revoke the login family of a reused refresh token' USING ERRCODE = '55000';
  END IF;
  RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
END
$$;
COMMENT ON FUNCTION authctx.refresh(text) IS
  'spend a refresh token for a new session and refresh token; a spent token presented again revokes its whole family (28000)';

CREATE OR REPLACE FUNCTION authctx.logout(session_token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok  authctx.token;
  v_now  timestamptz := clock_timestamp();
  v_row  authctx.sessions;
  v_rev  record;
BEGIN
  -- 22P02 for anything that is not a well-formed session token; the input
  -- is never echoed
  IF session_token IS NOT NULL THEN
    v_tok := session_token::authctx.token;
  END IF;
  IF v_tok IS NULL OR authctx._token_kind(v_tok) <> 'session' THEN
    RAISE EXCEPTION 'invalid input syntax for type authctx.token'
      USING ERRCODE = '22P02', DETAIL = 'logout takes a session token (axs_).';
  END IF;
  SELECT * INTO v_row FROM authctx.sessions s WHERE s.id = authctx._token_id(v_tok);
  -- unknown, or not its secret: nothing to revoke, and no error (RFC 7009)
  IF v_row.id IS NULL
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok)) THEN
    RETURN;
  END IF;
  -- the whole login ends, whatever state this session is in
  PERFORM 1 FROM authctx.users u WHERE u.id = v_row.user_id FOR SHARE;
  PERFORM authctx._lock_family(v_row.family_id);
  SELECT * INTO v_rev FROM authctx._revoke_family_rows(v_row.family_id, v_now) r;
  IF v_rev.sessions > 0 OR v_rev.tokens > 0 THEN
    PERFORM authctx._audit('logout', v_row.user_id, v_row.tenant_id, v_row.id,
                           jsonb_build_object('family_id', v_row.family_id));
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.logout(text) IS
  'revoke the login family of a session token (its sessions and refresh tokens) in whatever state; idempotent (RFC 7009), 22P02 for anything but a session token';

CREATE OR REPLACE FUNCTION authctx.create_session(user_id uuid, tenant text DEFAULT NULL,
                                       ttl interval DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok    authctx.token := authctx._token_new('session');
  v_user   uuid := authctx._enabled_user(create_session.user_id);
  v_tenant uuid := authctx._member_tenant(v_user, create_session.tenant, false);
  v_ttl    interval := coalesce(create_session.ttl, authctx._setting('authctx.session_lifetime'));
  v_now    timestamptz := authctx._issue_time(v_user);
  v_family uuid := gen_random_uuid();
BEGIN
  IF v_ttl <= '0' THEN
    RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = '22023';
  END IF;
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata)
  VALUES (authctx._token_id(v_tok), v_user, v_tenant, v_family, authctx._token_verifier(v_tok),
          v_now, v_now, v_now + v_ttl, coalesce(create_session.metadata, '{}'::jsonb));
  PERFORM authctx._audit('session_created', v_user, v_tenant, authctx._token_id(v_tok),
                         jsonb_build_object('family_id', v_family));
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx.create_session(uuid, text, interval, jsonb) IS
  'create a session for a user (no password, no refresh token): for trusted back ends and tests';

CREATE OR REPLACE FUNCTION authctx.revoke_session(session_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_family uuid;
  v_user   uuid;
  v_tenant uuid;
  v_rev    record;
BEGIN
  SELECT s.family_id, s.user_id, s.tenant_id INTO v_family, v_user, v_tenant
    FROM authctx.sessions s WHERE s.id = revoke_session.session_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  -- The whole login goes: its refresh tokens must not bring it back, and a
  -- refresh may already have replaced this session by a newer one.
  PERFORM 1 FROM authctx.users u WHERE u.id = v_user FOR SHARE;
  PERFORM authctx._lock_family(v_family);
  SELECT * INTO v_rev FROM authctx._revoke_family_rows(v_family, v_now) r;
  IF v_rev.sessions = 0 AND v_rev.tokens = 0 THEN
    RETURN false;
  END IF;
  PERFORM authctx._audit('session_revoked', v_user, v_tenant, revoke_session.session_id,
                         jsonb_build_object('reason', 'revoke_session', 'family_id', v_family,
                                            'sessions', v_rev.sessions));
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.revoke_session(uuid) IS
  'revoke a session with its whole login family (sessions and refresh tokens); true when this call revoked anything';

CREATE OR REPLACE FUNCTION authctx.revoke_user_sessions(user_id uuid) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
  SELECT authctx._revoke_user_sessions(revoke_user_sessions.user_id, NULL, 'revoke_user_sessions');
$$;
COMMENT ON FUNCTION authctx.revoke_user_sessions(uuid) IS
  'revoke every session and refresh token of a user issued until now, including those of logins and refreshes still in flight; returns how many live sessions were revoked';

CREATE OR REPLACE FUNCTION authctx.list_sessions(user_id uuid)
RETURNS TABLE (session_id uuid, tenant_id uuid, created_at timestamptz,
               last_seen_at timestamptz, expires_at timestamptz, metadata jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.id, s.tenant_id, s.created_at, s.last_seen_at, s.expires_at, s.metadata
    FROM authctx.users u
    JOIN authctx.sessions s ON s.user_id = u.id,
         (SELECT clock_timestamp() AS now,
                 authctx._setting('authctx.session_idle_timeout') AS idle) c
   WHERE u.id = list_sessions.user_id
     AND u.disabled_at IS NULL
     AND NOT authctx._revoked_by_user(s.created_at, s.family_id,
                                      u.sessions_revoked_before, u.sessions_revoked_except)
     AND ((s.revoked_at IS NULL
           AND s.expires_at > c.now
           AND (c.idle = '0' OR s.last_seen_at + c.idle > c.now))
          OR EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                      WHERE rt.family_id = s.family_id AND rt.session_id = s.id
                        AND rt.revoked_at IS NULL AND rt.spent_at IS NULL
                        AND rt.expires_at > c.now))
   ORDER BY s.created_at, s.id;
$$;
COMMENT ON FUNCTION authctx.list_sessions(uuid) IS
  'a user''s live sessions, and the session of every login family that can still be refreshed; without secrets';

CREATE OR REPLACE FUNCTION authctx.cleanup() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_idle   interval := authctx._setting('authctx.session_idle_timeout');
  -- rows stay a little past their end: last-seen times arrive late, and
  -- revocations leave rows dead for more than half of it alone
  v_margin interval := authctx._cleanup_margin();
  v_total  bigint := 0;
BEGIN
  -- a session row stays while its login family can still be refreshed
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$(t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3
        OR ($2 > interval '0' AND t.last_seen_at + $2 < $1 - $3))
       AND NOT EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                        WHERE rt.family_id = t.family_id AND rt.revoked_at IS NULL
                          AND rt.spent_at IS NULL AND rt.expires_at > $1)$c$,
    v_now, v_idle, v_margin, NULL);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys and expired WebAuthn challenges in small batches; returns rows removed';

REVOKE ALL ON FUNCTION
  authctx._revoked_by_user(timestamptz, uuid, timestamptz, uuid), authctx._issue_time(uuid),
  authctx._cleanup_margin(), authctx._family_lock_key(uuid), authctx._lock_family(uuid),
  authctx._holds_family_lock(uuid), authctx._revoke_family_rows(uuid, timestamptz),
  authctx._lock_membership(uuid, uuid), authctx._refresh_lock(uuid, uuid, uuid, timestamptz),
  authctx._refresh_pair(authctx.refresh_tokens, boolean)
FROM PUBLIC;

-- Login families whose session row an earlier cleanup() deleted while they
-- could still refresh get one back: a revoked placeholder whose verifier
-- matches no token, carrying the family's metadata, so that logout,
-- revoke_session and list_sessions reach every family that can refresh.
INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier, created_at,
                              last_seen_at, expires_at, revoked_at, metadata)
SELECT DISTINCT ON (rt.session_id)
       rt.session_id, rt.user_id, rt.tenant_id, rt.family_id,
       pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())),
       rt.created_at, rt.created_at, rt.created_at, pg_catalog.clock_timestamp(),
       coalesce((SELECT s.metadata FROM authctx.sessions s
                  WHERE s.family_id = rt.family_id
                  ORDER BY s.created_at DESC LIMIT 1), '{}'::jsonb)
  FROM authctx.refresh_tokens rt
 WHERE rt.revoked_at IS NULL AND rt.spent_at IS NULL
   AND rt.expires_at > pg_catalog.clock_timestamp()
   AND NOT EXISTS (SELECT 1 FROM authctx.sessions s WHERE s.id = rt.session_id)
 ORDER BY rt.session_id;

-- ---------------------------------------------------------------------------
-- docs: tenant discovery (list_memberships, my_tenants, list_tenants); the
-- same text as the end of src/sql/40_identity.sql.
-- ---------------------------------------------------------------------------
-- Tenant discovery: which tenants a user belongs to, and which exist.
--
-- A user with several memberships logs in without a tenant (login_result's
-- tenant_id is NULL); the application then calls my_tenants() under
-- auth_begin(token), shows the list, and calls auth_begin(token, chosen).
-- my_tenants() trusts only the context auth_begin published in this
-- transaction: it asks authctx.current(), whose C accessor answers "no
-- context" for anything else (a value that did not come from auth_begin in
-- this transaction, or one left from an earlier transaction).
--
-- An API key acts in its own tenant only, so under an API key my_tenants()
-- lists that tenant alone: a key handed to a machine does not reveal the
-- other tenants its user belongs to.
--
-- All three only read, so they work in a read-only transaction and on a
-- standby; like list_sessions, list_memberships of an unknown user is
-- empty.  my_tenants() without a context raises 28000.
-- ---------------------------------------------------------------------------

CREATE FUNCTION authctx.list_memberships(user_id uuid)
RETURNS TABLE (tenant_id uuid, slug text, name text, role text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.tenant_id, t.slug, t.name, m.role, m.created_at
    FROM authctx.memberships m
    JOIN authctx.tenants t ON t.id OPERATOR(pg_catalog.=) m.tenant_id
   WHERE m.user_id OPERATOR(pg_catalog.=) list_memberships.user_id
   ORDER BY t.slug
$$;
COMMENT ON FUNCTION authctx.list_memberships(uuid) IS
  'the tenants a user belongs to, with the user''s role there and when the membership began (none for an unknown user, as list_sessions)';

CREATE FUNCTION authctx.my_tenants()
RETURNS TABLE (tenant_id uuid, slug text, name text, role text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  ctx authctx.context := authctx.current();
BEGIN
  IF ctx.user_id IS NULL THEN
    RAISE EXCEPTION 'no authentication context in this transaction'
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Call auth_begin(token) earlier in the same transaction; a session without a tenant is enough.';
  END IF;
  RETURN QUERY
    SELECT l.* FROM authctx.list_memberships(ctx.user_id) l
     WHERE ctx.auth_method OPERATOR(pg_catalog.<>) 'api_key'
        OR l.tenant_id OPERATOR(pg_catalog.=) ctx.tenant_id
     ORDER BY l.slug;
END
$$;
COMMENT ON FUNCTION authctx.my_tenants() IS
  'the tenants the user of this transaction''s auth_begin context belongs to (an API key: its own tenant only); 28000 without a context';

CREATE FUNCTION authctx.list_tenants()
RETURNS TABLE (tenant_id uuid, slug text, name text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT t.id, t.slug, t.name, t.created_at
    FROM authctx.tenants t
   ORDER BY t.slug
$$;
COMMENT ON FUNCTION authctx.list_tenants() IS 'every tenant';

REVOKE ALL ON FUNCTION authctx.list_memberships(uuid), authctx.my_tenants(),
  authctx.list_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authctx.list_memberships(uuid), authctx.list_tenants()
  TO authctx_manager;
GRANT EXECUTE ON FUNCTION authctx.my_tenants() TO authctx_app;

-- review: the isolation state's saved default is printed and parsed with
-- standard_conforming_strings = on (a literal printed with it on and parsed
-- with it off ran the rest of a table owner's literal as SQL in
-- disable_tenant_isolation's caller's session)
CREATE OR REPLACE FUNCTION authctx._isolation_save_unchecked(tbl regclass, col name, idx name)
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
CREATE OR REPLACE FUNCTION authctx.disable_tenant_isolation(tbl regclass)
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

-- review: isolation_report names grants of TRUNCATE, TRIGGER and REFERENCES
-- to roles other than the owner (row level security limits none of them),
-- and foreign keys to an isolated table that do not pair the tenant columns
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

-- app: WebAuthn registration in the database (authctx.register_webauthn: the
-- attestation object read by C, "none" and "packed" self-attestation taken
-- without being evaluated), and the rules added to both ceremonies:
-- crossOrigin true and a topOrigin other than origin are refused, and the
-- setting authctx.webauthn_user_verification (required by default) decides
-- whether the user-verified flag must be set.  _webauthn_verify now takes
-- its clientDataJSON checks from _webauthn_client_data and checks user
-- verification; existing credentials and challenges are unchanged.

CREATE FUNCTION authctx._webauthn_parse_registration(attestation_object bytea, rp_id text,
    OUT status integer, OUT credential_id bytea, OUT public_key bytea,
    OUT alg integer, OUT sign_count bigint, OUT flags integer, OUT fmt text)
  AS 'MODULE_PATHNAME', 'authctx_webauthn_parse_registration'
  LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_parse_registration(bytea, text) IS
  'internal: a registration''s attestation object read strictly: status 0 and the credential, or -1 malformed, -2 rp_id, -3 user not present, -6 no attested credential, -7 attestation format, -8 key, -9 credential id length';

CREATE FUNCTION authctx._webauthn_client_data(p_client_data_json bytea,
    p_type text, p_origin text, OUT failure text, OUT challenge bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_client   jsonb;
  v_chal     bytea;
  v_expires  timestamptz;
BEGIN
  failure := 'malformed';
  IF pg_catalog.octet_length(p_client_data_json) > 65536 THEN
    RETURN;
  END IF;
  -- UTF-8 JSON; garbage of any kind is a failed check
  BEGIN
    v_client := pg_catalog.convert_from(p_client_data_json, 'UTF8')::jsonb;
  EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
    RETURN;
  END;
  IF pg_catalog.jsonb_typeof(v_client) IS DISTINCT FROM 'object'
     OR pg_catalog.jsonb_typeof(v_client -> 'challenge') IS DISTINCT FROM 'string' THEN
    RETURN;
  END IF;

  -- the challenge: issued here, spent by this attempt whatever follows
  failure := 'challenge';
  v_chal := authctx._webauthn_b64url_decode(v_client ->> 'challenge');
  IF v_chal IS NULL THEN
    RETURN;
  END IF;
  challenge := v_chal;
  DELETE FROM authctx.webauthn_challenges c
   WHERE c.challenge = v_chal
  RETURNING c.expires_at INTO v_expires;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  IF v_expires <= pg_catalog.clock_timestamp() THEN
    failure := 'challenge_expired';
    RETURN;
  END IF;

  IF pg_catalog.jsonb_typeof(v_client -> 'type') IS DISTINCT FROM 'string'
     OR (v_client ->> 'type') <> p_type THEN
    failure := 'type';
    RETURN;
  END IF;
  IF pg_catalog.jsonb_typeof(v_client -> 'origin') IS DISTINCT FROM 'string'
     OR (v_client ->> 'origin') <> p_origin THEN
    failure := 'origin';
    RETURN;
  END IF;
  -- made in a cross-origin iframe: refused, whatever the value's spelling
  -- (only an absent member or JSON false is same-origin)
  IF v_client ? 'crossOrigin' AND (v_client -> 'crossOrigin') <> 'false'::jsonb THEN
    failure := 'cross_origin';
    RETURN;
  END IF;
  IF v_client ? 'topOrigin'
     AND (v_client -> 'topOrigin') IS DISTINCT FROM pg_catalog.to_jsonb(p_origin) THEN
    failure := 'top_origin';
    RETURN;
  END IF;
  failure := NULL;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_client_data(bytea, text, text) IS
  'internal: check a ceremony''s clientDataJSON and spend its challenge; why it failed, or NULL';

CREATE FUNCTION authctx._webauthn_user_verified(flags integer) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (flags & 4) <> 0
      OR pg_catalog.current_setting('authctx.webauthn_user_verification') = 'preferred';
$$;
COMMENT ON FUNCTION authctx._webauthn_user_verified(integer) IS
  'internal: the user-verified flag is set, or authctx.webauthn_user_verification does not require it';

CREATE FUNCTION authctx.register_webauthn(user_id uuid, attestation_object bytea,
    client_data_json bytea, rp_id text, origin text, name text DEFAULT NULL)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_failure  text;
  v_chal     bytea;
  v_status   integer;
  v_cred     bytea;
  v_key      bytea;
  v_alg      integer;
  v_count    bigint;
  v_flags    integer;
  v_fmt      text;
BEGIN
  IF register_webauthn.user_id IS NULL OR register_webauthn.attestation_object IS NULL
     OR register_webauthn.client_data_json IS NULL OR register_webauthn.rp_id IS NULL
     OR register_webauthn.origin IS NULL THEN
    RAISE EXCEPTION 'user_id, attestation_object, client_data_json, rp_id and origin must not be null'
      USING ERRCODE = '22004';
  END IF;
  PERFORM 1 FROM authctx.users u
    WHERE u.id = register_webauthn.user_id
    FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user does not exist' USING ERRCODE = '42704';
  END IF;

  BEGIN
    SELECT c.failure, c.challenge INTO v_failure, v_chal
      FROM authctx._webauthn_client_data(register_webauthn.client_data_json,
                                         'webauthn.create', register_webauthn.origin) c;
    IF v_failure IS NULL THEN
      SELECT r.status, r.credential_id, r.public_key, r.alg, r.sign_count, r.flags, r.fmt
        INTO v_status, v_cred, v_key, v_alg, v_count, v_flags, v_fmt
        FROM authctx._webauthn_parse_registration(register_webauthn.attestation_object,
                                                  register_webauthn.rp_id) r;
      v_failure := CASE v_status
                     WHEN 0 THEN NULL
                     WHEN -2 THEN 'rp_id'
                     WHEN -3 THEN 'user_presence'
                     WHEN -6 THEN 'no_credential'
                     WHEN -7 THEN 'attestation'
                     WHEN -8 THEN 'key'
                     WHEN -9 THEN 'credential_id'
                     ELSE 'malformed'
                   END;
    END IF;
    IF v_failure IS NULL AND NOT authctx._webauthn_user_verified(v_flags) THEN
      v_failure := 'user_verification';
    END IF;
    IF v_failure IS NULL THEN
      INSERT INTO authctx.webauthn_credentials
             (credential_id, user_id, public_key, alg, sign_count, name)
      VALUES (v_cred, register_webauthn.user_id, v_key, v_alg, v_count,
              register_webauthn.name)
      ON CONFLICT DO NOTHING;
      IF NOT FOUND THEN
        v_failure := 'credential_exists';
      END IF;
    END IF;
    IF v_failure IS NOT NULL THEN
      RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = 'AXW00';
    END IF;
  EXCEPTION WHEN SQLSTATE 'AXW00' THEN
    NULL;                       -- rolled back: no spend, no row
  END;

  IF v_failure IS NULL THEN
    PERFORM authctx._audit('webauthn_credential_added', register_webauthn.user_id,
                           NULL, NULL,
                           pg_catalog.jsonb_build_object('alg', v_alg,
                                                         'name', register_webauthn.name,
                                                         'attestation', v_fmt));
    RETURN v_cred;
  END IF;

  -- in a transaction of its own: our caller's rollback must not undo it
  PERFORM authctx._autonomous('webauthn_failed', pg_catalog.jsonb_build_object(
    'challenge', pg_catalog.encode(v_chal, 'hex'),
    'credential_id', pg_catalog.encode(v_cred, 'hex'),
    'user_id', register_webauthn.user_id,
    'reason', 'registration: ' || v_failure,
    'clone', false,
    'login', false,
    'db_role', pg_catalog.session_user()));
  RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = '22023',
    DETAIL = 'The attestation object or client data does not show a valid registration of a supported passkey for this challenge, relying party and origin.';
END
$$;
COMMENT ON FUNCTION authctx.register_webauthn(uuid, bytea, bytea, text, text, text) IS
  'register a passkey from a navigator.credentials.create() response (attestation none or packed self-attestation, not evaluated); its credential id; any failure raises 22023, stores nothing and spends the challenge';

CREATE OR REPLACE FUNCTION authctx._webauthn_verify(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text,
    OUT verified_user uuid, OUT credential_user uuid, OUT failure text,
    OUT challenge bytea, OUT stored_count bigint, OUT presented_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cred     record;
  v_counter  bigint;
BEGIN
  failure := 'malformed';
  IF p_credential_id IS NULL OR p_authenticator_data IS NULL
     OR p_client_data_json IS NULL OR p_signature IS NULL
     OR p_rp_id IS NULL OR p_origin IS NULL THEN
    RETURN;
  END IF;

  -- clientDataJSON; the challenge is spent here, whatever follows
  SELECT c.failure, c.challenge INTO failure, challenge
    FROM authctx._webauthn_client_data(p_client_data_json, 'webauthn.get', p_origin) c;
  IF failure IS NOT NULL THEN
    RETURN;
  END IF;

  -- the credential, locked so that concurrent assertions see each other's counter
  SELECT c.user_id, c.public_key, c.sign_count, c.clone_suspected_at, u.disabled_at
    INTO v_cred
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = p_credential_id
     FOR UPDATE OF c;
  IF NOT FOUND THEN
    failure := 'credential';
    RETURN;
  END IF;
  credential_user := v_cred.user_id;
  IF v_cred.disabled_at IS NOT NULL THEN
    failure := 'disabled';
    RETURN;
  END IF;
  IF v_cred.clone_suspected_at IS NOT NULL THEN
    failure := 'clone_suspected';
    RETURN;
  END IF;

  v_counter := authctx._webauthn_check_assertion(v_cred.public_key,
                 p_authenticator_data, p_client_data_json, p_signature, p_rp_id);
  IF v_counter < 0 THEN
    failure := CASE v_counter
                 WHEN -2 THEN 'rp_id'
                 WHEN -3 THEN 'user_presence'
                 WHEN -4 THEN 'signature'
                 ELSE 'malformed'
               END;
    RETURN;
  END IF;
  -- the signature covers the flags: a byte C has just read (authData >= 37 bytes)
  IF NOT authctx._webauthn_user_verified(pg_catalog.get_byte(p_authenticator_data, 32)) THEN
    failure := 'user_verification';
    RETURN;
  END IF;

  -- a counter that does not grow (either side non-zero): possibly cloned;
  -- the caller marks the credential out of band (_webauthn_attempt)
  IF (v_cred.sign_count <> 0 OR v_counter <> 0) AND v_counter <= v_cred.sign_count THEN
    failure := 'counter';
    stored_count := v_cred.sign_count;
    presented_count := v_counter;
    RETURN;
  END IF;

  UPDATE authctx.webauthn_credentials c
     SET sign_count = v_counter,
         last_used_at = pg_catalog.clock_timestamp()
   WHERE c.credential_id = p_credential_id;
  verified_user := v_cred.user_id;
  failure := NULL;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text) IS
  'internal: verify a WebAuthn assertion; the user, the credential''s owner, and why it failed';

REVOKE ALL ON FUNCTION
  authctx._webauthn_parse_registration(bytea, text),
  authctx._webauthn_client_data(bytea, text, text),
  authctx._webauthn_user_verified(integer),
  authctx.register_webauthn(uuid, bytea, bytea, text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  authctx.register_webauthn(uuid, bytea, bytea, text, text, text)
TO authctx_manager;

-- lockout: each password and passkey attempt decided by the worker (issue 10,
-- item 4).  login and login_webauthn ask the worker (kinds login_attempt
-- and webauthn_attempt) to decide each attempt in a READ COMMITTED
-- transaction of its own; with no worker they refuse (28P01) before
-- verifying anything; verify_webauthn answers NULL; a reused refresh token
-- that cannot be recorded is refused with 28000 (its family stays alive,
-- logged).  The failure records move into _login_failure and
-- _webauthn_failure; _webauthn_attempt takes the worker's payload (a new
-- signature: the old one is dropped).

CREATE OR REPLACE FUNCTION authctx._lockout_settings() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- _setting first: it loads the library, which defines the settings
  v_base interval := authctx._setting('authctx.lockout_base_delay');
  v_max  interval := authctx._setting('authctx.lockout_max_delay');
BEGIN
  RETURN jsonb_build_object(
    'threshold', current_setting('authctx.lockout_threshold')::integer,
    'base_delay', extract(epoch FROM v_base),
    'max_delay', extract(epoch FROM v_max));
END
$$;
COMMENT ON FUNCTION authctx._lockout_settings() IS
  'internal: the caller''s lockout settings (threshold, base_delay, max_delay in seconds), for the worker';

CREATE OR REPLACE FUNCTION authctx._login_failure(p_user_id uuid, p_reason text, p_count boolean,
                                       p_record jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_threshold integer;
  v_base      double precision;
  v_max       double precision;
  v_failures  integer;
  v_locked    timestamptz;
BEGIN
  IF p_user_id IS NOT NULL AND coalesce(p_count, false) THEN
    v_threshold := greatest((p_record ->> 'threshold')::integer, 1);
    v_base := greatest((p_record ->> 'base_delay')::double precision, 1);
    v_max := greatest((p_record ->> 'max_delay')::double precision, v_base);
    -- The streak is forgotten after a quiet period of twice the longest
    -- lockout.  INSERT ... SELECT: a user deleted (or not yet committed)
    -- meanwhile simply gets no row.
    INSERT INTO authctx.login_throttle AS t (user_id, failures, last_failure_at)
    SELECT u.id, 1, v_now FROM authctx.users u WHERE u.id = p_user_id
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
       WHERE t.user_id = p_user_id;
    END IF;
  END IF;
  INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
  VALUES (v_now, 'login_failed', p_user_id,
          coalesce(p_record ->> 'db_role', session_user::text),
          jsonb_strip_nulls(jsonb_build_object(
            'reason', p_reason,
            'method', p_record ->> 'method',
            'failures', v_failures,
            'locked_until', v_locked)));
  RETURN jsonb_strip_nulls(jsonb_build_object('failures', v_failures, 'locked_until', v_locked));
END
$$;
COMMENT ON FUNCTION authctx._login_failure(uuid, text, boolean, jsonb) IS
  'internal: count a failed login toward the lockout (when it counts) and audit login_failed; returns failures and locked_until';

CREATE OR REPLACE FUNCTION authctx._login_attempt(p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_email    text := p_attempt ->> 'email';
  v_user     uuid;
  v_disabled timestamptz;
  v_locked   timestamptz;
  v_verified uuid;
  v_reason   text;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a login attempt must be decided in a READ COMMITTED transaction'
      USING ERRCODE = '25000';
  END IF;
  -- one attempt per email at a time, known or not (lock order, 1)
  PERFORM authctx._lock_account(v_email);
  SELECT u.id, u.disabled_at INTO v_user, v_disabled
    FROM authctx.users u WHERE authctx._email_key(u.email) = authctx._email_key(v_email);
  IF v_user IS NOT NULL THEN
    SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t WHERE t.user_id = v_user;
  END IF;

  IF v_locked > clock_timestamp() THEN
    PERFORM authctx._password_dummy_verify(p_attempt ->> 'password');
    v_reason := 'locked';
  ELSE
    -- hashes for an unknown email too
    v_verified := authctx.verify_password(v_email, p_attempt ->> 'password');
    IF v_user IS NULL THEN
      v_reason := 'unknown_user';
    ELSIF v_disabled IS NOT NULL THEN
      v_reason := 'disabled';
    ELSIF v_verified IS DISTINCT FROM v_user THEN
      v_reason := 'bad_password';
    ELSIF v_user IS DISTINCT FROM (p_attempt ->> 'user_id')::uuid THEN
      -- the caller locked another user (or none): the email moved meanwhile
      v_reason := 'changed';
    ELSIF NOT coalesce((p_attempt ->> 'member')::boolean, false) THEN
      v_reason := 'not_member';
    END IF;
  END IF;

  IF v_reason IS NULL THEN
    -- the streak ends here, whatever the caller's transaction does next
    DELETE FROM authctx.login_throttle t WHERE t.user_id = v_user;
    RETURN jsonb_build_object('user_id', v_user);
  END IF;
  RETURN authctx._login_failure(v_user, v_reason, v_reason = 'bad_password', p_attempt);
END
$$;
COMMENT ON FUNCTION authctx._login_attempt(jsonb) IS
  'internal: decide one password attempt in the worker''s transaction (account lock, lockout state, verification, failure recorded or streak cleared); {user_id} on success';

CREATE OR REPLACE FUNCTION authctx._login_tenant(p_user_id uuid, p_tenant text,
                                      OUT tenant_id uuid, OUT member boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  member := true;
  IF p_tenant IS NULL THEN
    tenant_id := authctx._member_tenant(p_user_id, NULL, false);
  ELSE
    tenant_id := authctx._resolve_tenant(p_tenant);
    member := tenant_id IS NOT NULL AND authctx._lock_membership(tenant_id, p_user_id);
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._login_tenant(uuid, text) IS
  'internal: the tenant of a login''s session and whether the user is a member, the membership locked FOR SHARE';

CREATE OR REPLACE FUNCTION authctx._attempt_in_worker(p_kind text, p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_message text;
  v_detail  text;
BEGIN
  RETURN authctx._autonomous_call(p_kind, p_attempt);
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
  RAISE LOG 'authentication attempt refused unverified: %', v_message
    USING DETAIL = v_detail;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION authctx._attempt_in_worker(text, jsonb) IS
  'internal: the worker''s verdict on an authentication attempt, or NULL (logged) when no worker could decide it';

CREATE OR REPLACE FUNCTION authctx.login(email text, password text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key     bytea := authctx._email_key(login.email);
  v_user    uuid;
  v_tenant  uuid;
  v_member  boolean := false;
  v_verdict jsonb;
BEGIN
  -- A read-only transaction (a standby, BEGIN READ ONLY) can issue nothing:
  -- refuse before any password is tried.
  IF current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- The user's row FOR SHARE (lock order, 2) and the membership (3) before
  -- the password is verified: a set_password, disable_user,
  -- revoke_user_sessions or remove_member either committed before (READ
  -- COMMITTED reads its result; REPEATABLE READ fails with 40001) or waits
  -- for us and then revokes what we issue.
  IF v_key IS NOT NULL THEN
    SELECT u.id INTO v_user
      FROM authctx.users u WHERE authctx._email_key(u.email) = v_key
       FOR SHARE;
  END IF;
  IF v_user IS NOT NULL THEN
    SELECT t.tenant_id, t.member INTO v_tenant, v_member
      FROM authctx._login_tenant(v_user, login.tenant) t;
  END IF;
  -- The worker decides and records the attempt in a transaction of its
  -- own, reading the latest committed state (see Login attempts).  An
  -- email without a key is nobody's; a password over the hard cap
  -- (identity.c, 4096 bytes) can be nobody's either: neither is shipped.
  v_verdict := authctx._attempt_in_worker('login_attempt', jsonb_build_object(
    'email', CASE WHEN v_key IS NOT NULL THEN login.email END,
    'password', CASE WHEN octet_length(login.password) <= 4096 THEN login.password END,
    'user_id', v_user,
    'member', v_member,
    'method', 'password',
    'db_role', session_user) || authctx._lockout_settings());
  IF v_user IS NULL OR (v_verdict ->> 'user_id')::uuid IS DISTINCT FROM v_user THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'password', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login(text, text, text) IS
  'password login: a session and a refresh token; each attempt is decided, counted and audited by a background worker in a transaction of its own; any failure, or no worker to decide, raises 28P01 with one generic message';

CREATE OR REPLACE FUNCTION authctx.refresh(refresh_token text) RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok    authctx.token := authctx._parse_token(refresh_token, 'refresh');
  v_id     uuid;
  v_now    timestamptz := clock_timestamp();
  v_row    authctx.refresh_tokens;
  v_spent  boolean;
  v_grace  interval;
  v_message text;
  v_detail  text;
BEGIN
  IF v_tok IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  v_id := authctx._token_id(v_tok);

  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.revoked_at IS NOT NULL
     OR v_row.expires_at <= v_now THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Lock (user, membership, family) and spend.  Holding the family lock,
  -- nobody else changes the token: the UPDATE sees its latest state (or, in
  -- REPEATABLE READ, fails with 40001 when it changed after our snapshot).
  -- When it is already spent, the subtransaction is rolled back: that
  -- releases every lock taken here, and the reuse path below holds none.
  BEGIN
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = v_now, spent_xid = pg_current_xact_id()
     WHERE rt.id = v_id AND rt.spent_at IS NULL AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'refresh token not spendable' USING ERRCODE = 'AX001';
    END IF;
    v_spent := true;
  EXCEPTION WHEN SQLSTATE 'AX001' THEN
    v_spent := false;
  END;
  IF v_spent THEN
    -- rotation: the session issued with this refresh token ends here
    UPDATE authctx.sessions s SET revoked_at = v_now
     WHERE s.id = v_row.session_id AND s.revoked_at IS NULL;
    RETURN authctx._refresh_pair(v_row, false);
  END IF;

  -- Spent (or revoked) by someone else.  We hold no lock on the family.
  SELECT * INTO v_row FROM authctx.refresh_tokens rt WHERE rt.id = v_id;
  v_now := clock_timestamp();
  IF NOT FOUND OR v_row.revoked_at IS NOT NULL OR v_row.spent_at IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  -- Spent earlier in this very transaction: that spend dies with the error
  -- we raise, and the worker would wait for our locks.  Not a reuse.
  IF v_row.spent_xid = pg_current_xact_id_if_assigned() THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;

  v_grace := authctx._setting('authctx.refresh_reuse_grace');
  IF v_grace > '0' AND v_now - v_row.spent_at <= v_grace THEN
    -- A client racing itself.  Lock as a spend does and re-spend the token:
    -- a real update, which a concurrent family revocation either waits for
    -- (then revokes our rows too) or has already made impossible.
    PERFORM authctx._refresh_lock(v_row.user_id, v_row.tenant_id, v_row.family_id,
                                  v_row.created_at);
    UPDATE authctx.refresh_tokens rt SET spent_at = rt.spent_at
     WHERE rt.id = v_id AND rt.revoked_at IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
    END IF;
    RETURN authctx._refresh_pair(v_row, true);
  END IF;

  -- Reuse of a spent token: revoke the family in a transaction of its own.
  -- Not from a transaction that holds the family's lock already (it
  -- refreshed or logged out in this family earlier): the worker would wait
  -- for it, and whatever it revoked itself dies with our error.
  IF authctx._holds_family_lock(v_row.family_id) THEN
    RAISE EXCEPTION 'cannot revoke a login family from a transaction that holds its lock'
      USING ERRCODE = '55000',
            DETAIL = 'A spent refresh token was presented again in a transaction that already changed its login family.',
            HINT = 'Present each refresh token in a transaction of its own.';
  END IF;
  -- When no worker can (see Refresh in the header), the family stays
  -- alive: refused as any invalid token, and logged for an operator.
  BEGIN
    PERFORM authctx._autonomous_call('refresh_reuse', jsonb_build_object(
      'family_id', v_row.family_id,
      'user_id', v_row.user_id,
      'tenant_id', v_row.tenant_id,
      'session_id', v_row.session_id,
      'token_id', v_id,
      'db_role', session_user));
  EXCEPTION WHEN object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    RAISE LOG 'reuse of a spent refresh token not recorded, login family % not revoked: %',
              v_row.family_id, v_message
      USING DETAIL = v_detail,
            HINT = 'Revoke the family with authctx.revoke_session on any of its sessions.';
  END;
  RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
END
$$;
COMMENT ON FUNCTION authctx.refresh(text) IS
  'spend a refresh token for a new session and refresh token; a spent token presented again revokes its whole family (28000)';

CREATE OR REPLACE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_role      name := coalesce(payload ->> 'db_role', session_user::text);
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

  ELSIF kind = 'login_attempt' THEN
    v_result := authctx._login_attempt(payload);

  ELSIF kind = 'webauthn_attempt' THEN
    v_result := authctx._webauthn_attempt(payload);

  ELSIF kind = 'login_failed' THEN
    v_result := authctx._login_failure((payload ->> 'user_id')::uuid, payload ->> 'reason',
                                       (payload ->> 'count')::boolean, payload);

  ELSIF kind = 'webauthn_failed' THEN
    v_result := authctx._webauthn_failure(payload);

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
  'internal: what the autonomous worker runs in its own transaction (audit, login_attempt, webauthn_attempt, login_failed, webauthn_failed, refresh_reuse, seen); returns what the record did';

CREATE OR REPLACE FUNCTION authctx._webauthn_failure(p_failure jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now  timestamptz := pg_catalog.clock_timestamp();
  v_role name := coalesce(p_failure ->> 'db_role', pg_catalog.session_user()::text);
BEGIN
  IF p_failure ->> 'challenge' IS NOT NULL THEN
    DELETE FROM authctx.webauthn_challenges c
     WHERE c.challenge = pg_catalog.decode(p_failure ->> 'challenge', 'hex');
  END IF;
  IF coalesce((p_failure ->> 'clone')::boolean, false) THEN
    UPDATE authctx.webauthn_credentials c
       SET clone_suspected_at = coalesce(c.clone_suspected_at, v_now)
     WHERE c.credential_id = pg_catalog.decode(p_failure ->> 'credential_id', 'hex');
    INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
    VALUES (v_now, 'webauthn_clone_suspected', (p_failure ->> 'user_id')::uuid, v_role,
            pg_catalog.jsonb_build_object('credential_id', p_failure ->> 'credential_id',
                                          'stored_count', (p_failure ->> 'stored_count')::bigint,
                                          'presented_count', (p_failure ->> 'presented_count')::bigint));
  END IF;
  IF coalesce((p_failure ->> 'login')::boolean, false) THEN
    RETURN authctx._login_failure((p_failure ->> 'user_id')::uuid, p_failure ->> 'reason',
                                  false, p_failure);
  END IF;
  INSERT INTO authctx.audit_log (occurred_at, event, user_id, db_role, detail)
  VALUES (v_now, 'webauthn_failed', (p_failure ->> 'user_id')::uuid, v_role,
          pg_catalog.jsonb_build_object('reason', p_failure ->> 'reason',
                                        'credential_id', p_failure ->> 'credential_id'));
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_failure(jsonb) IS
  'internal: spend the challenge of a failed WebAuthn attempt, mark a suspected clone, audit the failure (in the worker''s transaction)';

CREATE OR REPLACE FUNCTION authctx._webauthn_attempt(p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v         record;
  v_cred    bytea := pg_catalog.decode(p_attempt ->> 'credential_id', 'hex');
  v_login   boolean := coalesce((p_attempt ->> 'login')::boolean, false);
  v_failure text;
BEGIN
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a webauthn attempt must be decided in a READ COMMITTED transaction'
      USING ERRCODE = '25000';
  END IF;
  SELECT * INTO v
    FROM authctx._webauthn_verify(v_cred,
                                  pg_catalog.decode(p_attempt ->> 'authenticator_data', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'client_data_json', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'signature', 'hex'),
                                  p_attempt ->> 'rp_id', p_attempt ->> 'origin');
  v_failure := v.failure;
  IF v_failure IS NULL AND v_login THEN
    IF v.verified_user IS DISTINCT FROM (p_attempt ->> 'user_id')::uuid THEN
      -- the caller locked another user (or none): the credential moved
      v_failure := 'changed';
    ELSIF NOT coalesce((p_attempt ->> 'member')::boolean, false) THEN
      v_failure := 'not_member';
    END IF;
  END IF;
  IF v_failure IS NULL THEN
    RETURN pg_catalog.jsonb_build_object('user_id', v.verified_user);
  END IF;
  -- the challenge is already spent (deleted above) when it was found
  PERFORM authctx._webauthn_failure(p_attempt || pg_catalog.jsonb_build_object(
    'challenge', NULL,
    'user_id', coalesce(v.verified_user, v.credential_user),
    'reason', v_failure,
    'clone', v_failure = 'counter',
    'stored_count', v.stored_count,
    'presented_count', v.presented_count));
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_attempt(jsonb) IS
  'internal: decide one WebAuthn assertion in the worker''s transaction (challenge spent, checks, counter or clone mark, failure audited); {user_id} on success';

CREATE OR REPLACE FUNCTION authctx._webauthn_payload(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.jsonb_build_object(
    'credential_id', pg_catalog.encode(pg_catalog.substr(p_credential_id, 1, 1024), 'hex'),
    'authenticator_data', pg_catalog.encode(pg_catalog.substr(p_authenticator_data, 1, 65536), 'hex'),
    'client_data_json', pg_catalog.encode(pg_catalog.substr(p_client_data_json, 1, 65537), 'hex'),
    'signature', pg_catalog.encode(pg_catalog.substr(p_signature, 1, 65536), 'hex'),
    'rp_id', pg_catalog.substr(p_rp_id, 1, 4096),
    'origin', pg_catalog.substr(p_origin, 1, 4096));
$$;
COMMENT ON FUNCTION authctx._webauthn_payload(bytea, bytea, bytea, bytea, text, text) IS
  'internal: a WebAuthn assertion as the worker''s payload (hex, each part capped)';

CREATE OR REPLACE FUNCTION authctx.verify_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- NULL, as for any failed assertion, when no worker could decide it
  RETURN (authctx._attempt_in_worker('webauthn_attempt',
            authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
            || pg_catalog.jsonb_build_object('login', false,
                                             'db_role', pg_catalog.session_user()))
          ->> 'user_id')::uuid;
END
$$;
COMMENT ON FUNCTION authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text) IS
  'verify a WebAuthn assertion against a challenge issued here; the user''s id, or NULL (the challenge is spent either way)';

CREATE OR REPLACE FUNCTION authctx.login_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_user    uuid;
  v_tenant  uuid;
  v_member  boolean := false;
  v_verdict jsonb;
BEGIN
  -- a read-only transaction can issue nothing: refuse before any check
  IF pg_catalog.current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the credential's owner FOR SHARE (lock order, 2) and the membership (3)
  -- before the assertion is checked, as login does
  SELECT u.id INTO v_user
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = login_webauthn.credential_id
     FOR SHARE OF u;
  IF v_user IS NOT NULL THEN
    SELECT t.tenant_id, t.member INTO v_tenant, v_member
      FROM authctx._login_tenant(v_user, login_webauthn.tenant) t;
  END IF;
  v_verdict := authctx._attempt_in_worker('webauthn_attempt',
                 authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
                 || pg_catalog.jsonb_build_object('login', true, 'user_id', v_user,
                                                  'member', v_member, 'method', 'webauthn',
                                                  'db_role', pg_catalog.session_user()));
  IF v_user IS NULL OR (v_verdict ->> 'user_id')::uuid IS DISTINCT FROM v_user THEN
    -- the challenge spend and the login_failed record were written by the
    -- worker; a passkey failure does not count toward the password lockout
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- a session, a refresh token and the login audit record
  RETURN authctx._issue_session(v_user, v_tenant, 'webauthn',
                                pg_catalog.jsonb_build_object('method', 'webauthn'));
END
$$;
COMMENT ON FUNCTION authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text) IS
  'log in with a WebAuthn assertion: a new session and refresh token; the attempt is decided in a background worker''s transaction; failure, or no worker to decide, raises 28P01';

DROP FUNCTION authctx._webauthn_attempt(bytea, bytea, bytea, bytea, text, text, text, boolean);

REVOKE ALL ON FUNCTION
  authctx._lockout_settings(), authctx._login_failure(uuid, text, boolean, jsonb),
  authctx._login_attempt(jsonb), authctx._login_tenant(uuid, text),
  authctx._attempt_in_worker(text, jsonb),
  authctx._webauthn_failure(jsonb), authctx._webauthn_attempt(jsonb),
  authctx._webauthn_payload(bytea, bytea, bytea, bytea, text, text)
FROM PUBLIC;

-- lead: authctx.webauthn_user_verification reaches the worker that decides
-- an assertion (it sees neither the caller's SET nor ALTER ROLE ... SET):
-- the caller's value, read from the library's variable by
-- _webauthn_uv_policy(), travels in the payload; _webauthn_user_verified
-- and _webauthn_verify take it as an argument.
DROP FUNCTION authctx._webauthn_user_verified(integer);
DROP FUNCTION authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text);

-- The caller's authctx.webauthn_user_verification, from the library's
-- variable (never a placeholder); the worker that decides an assertion is
-- handed it in the payload.
CREATE FUNCTION authctx._webauthn_uv_policy() RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_webauthn_uv_policy'
  LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authctx._webauthn_uv_policy() IS
  'internal: this backend''s authctx.webauthn_user_verification (required or preferred)';

-- Has the ceremony proved user verification as the policy (required or
-- preferred; anything else counts as required) demands?  flags is
-- authenticatorData's flags byte (UV is 0x04).
CREATE FUNCTION authctx._webauthn_user_verified(flags integer, policy text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (flags & 4) <> 0 OR coalesce(policy = 'preferred', false);
$$;
COMMENT ON FUNCTION authctx._webauthn_user_verified(integer, text) IS
  'internal: the user-verified flag is set, or the policy (authctx.webauthn_user_verification) does not require it';

-- The registration ceremony (navigator.credentials.create), checked as a
-- relying party must, then stored as add_webauthn_credential stores a key.
-- The checks run in a subtransaction: on any failure it is rolled back (no
-- row, no lock) and a background worker spends the challenge and writes the
-- audit record in its own transaction, before the generic 22023 is raised.
CREATE OR REPLACE FUNCTION authctx.register_webauthn(user_id uuid, attestation_object bytea,
    client_data_json bytea, rp_id text, origin text, name text DEFAULT NULL)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_failure  text;
  v_chal     bytea;
  v_status   integer;
  v_cred     bytea;
  v_key      bytea;
  v_alg      integer;
  v_count    bigint;
  v_flags    integer;
  v_fmt      text;
BEGIN
  IF register_webauthn.user_id IS NULL OR register_webauthn.attestation_object IS NULL
     OR register_webauthn.client_data_json IS NULL OR register_webauthn.rp_id IS NULL
     OR register_webauthn.origin IS NULL THEN
    RAISE EXCEPTION 'user_id, attestation_object, client_data_json, rp_id and origin must not be null'
      USING ERRCODE = '22004';
  END IF;
  PERFORM 1 FROM authctx.users u
    WHERE u.id = register_webauthn.user_id
    FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user does not exist' USING ERRCODE = '42704';
  END IF;

  BEGIN
    SELECT c.failure, c.challenge INTO v_failure, v_chal
      FROM authctx._webauthn_client_data(register_webauthn.client_data_json,
                                         'webauthn.create', register_webauthn.origin) c;
    IF v_failure IS NULL THEN
      SELECT r.status, r.credential_id, r.public_key, r.alg, r.sign_count, r.flags, r.fmt
        INTO v_status, v_cred, v_key, v_alg, v_count, v_flags, v_fmt
        FROM authctx._webauthn_parse_registration(register_webauthn.attestation_object,
                                                  register_webauthn.rp_id) r;
      v_failure := CASE v_status
                     WHEN 0 THEN NULL
                     WHEN -2 THEN 'rp_id'
                     WHEN -3 THEN 'user_presence'
                     WHEN -6 THEN 'no_credential'
                     WHEN -7 THEN 'attestation'
                     WHEN -8 THEN 'key'
                     WHEN -9 THEN 'credential_id'
                     ELSE 'malformed'
                   END;
    END IF;
    IF v_failure IS NULL
       AND NOT authctx._webauthn_user_verified(v_flags, authctx._webauthn_uv_policy()) THEN
      v_failure := 'user_verification';
    END IF;
    IF v_failure IS NULL THEN
      INSERT INTO authctx.webauthn_credentials
             (credential_id, user_id, public_key, alg, sign_count, name)
      VALUES (v_cred, register_webauthn.user_id, v_key, v_alg, v_count,
              register_webauthn.name)
      ON CONFLICT DO NOTHING;
      IF NOT FOUND THEN
        v_failure := 'credential_exists';
      END IF;
    END IF;
    IF v_failure IS NOT NULL THEN
      RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = 'AXW00';
    END IF;
  EXCEPTION WHEN SQLSTATE 'AXW00' THEN
    NULL;                       -- rolled back: no spend, no row
  END;

  IF v_failure IS NULL THEN
    PERFORM authctx._audit('webauthn_credential_added', register_webauthn.user_id,
                           NULL, NULL,
                           pg_catalog.jsonb_build_object('alg', v_alg,
                                                         'name', register_webauthn.name,
                                                         'attestation', v_fmt));
    RETURN v_cred;
  END IF;

  -- in a transaction of its own: our caller's rollback must not undo it
  PERFORM authctx._autonomous('webauthn_failed', pg_catalog.jsonb_build_object(
    'challenge', pg_catalog.encode(v_chal, 'hex'),
    'credential_id', pg_catalog.encode(v_cred, 'hex'),
    'user_id', register_webauthn.user_id,
    'reason', 'registration: ' || v_failure,
    'clone', false,
    'login', false,
    'db_role', pg_catalog.session_user()));
  RAISE EXCEPTION 'webauthn registration failed' USING ERRCODE = '22023',
    DETAIL = 'The attestation object or client data does not show a valid registration of a supported passkey for this challenge, relying party and origin.';
END
$$;
COMMENT ON FUNCTION authctx.register_webauthn(uuid, bytea, bytea, text, text, text) IS
  'register a passkey from a navigator.credentials.create() response (attestation none or packed self-attestation, not evaluated); its credential id; any failure raises 22023, stores nothing and spends the challenge';

-- The whole check, with the failure reason for the audit log.  credential_user
-- is the credential's owner whenever the credential was found.
CREATE FUNCTION authctx._webauthn_verify(p_credential_id bytea,
    p_authenticator_data bytea, p_client_data_json bytea, p_signature bytea,
    p_rp_id text, p_origin text, p_user_verification text,
    OUT verified_user uuid, OUT credential_user uuid, OUT failure text,
    OUT challenge bytea, OUT stored_count bigint, OUT presented_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cred     record;
  v_counter  bigint;
BEGIN
  failure := 'malformed';
  IF p_credential_id IS NULL OR p_authenticator_data IS NULL
     OR p_client_data_json IS NULL OR p_signature IS NULL
     OR p_rp_id IS NULL OR p_origin IS NULL THEN
    RETURN;
  END IF;

  -- clientDataJSON; the challenge is spent here, whatever follows
  SELECT c.failure, c.challenge INTO failure, challenge
    FROM authctx._webauthn_client_data(p_client_data_json, 'webauthn.get', p_origin) c;
  IF failure IS NOT NULL THEN
    RETURN;
  END IF;

  -- the credential, locked so that concurrent assertions see each other's counter
  SELECT c.user_id, c.public_key, c.sign_count, c.clone_suspected_at, u.disabled_at
    INTO v_cred
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = p_credential_id
     FOR UPDATE OF c;
  IF NOT FOUND THEN
    failure := 'credential';
    RETURN;
  END IF;
  credential_user := v_cred.user_id;
  IF v_cred.disabled_at IS NOT NULL THEN
    failure := 'disabled';
    RETURN;
  END IF;
  IF v_cred.clone_suspected_at IS NOT NULL THEN
    failure := 'clone_suspected';
    RETURN;
  END IF;

  v_counter := authctx._webauthn_check_assertion(v_cred.public_key,
                 p_authenticator_data, p_client_data_json, p_signature, p_rp_id);
  IF v_counter < 0 THEN
    failure := CASE v_counter
                 WHEN -2 THEN 'rp_id'
                 WHEN -3 THEN 'user_presence'
                 WHEN -4 THEN 'signature'
                 ELSE 'malformed'
               END;
    RETURN;
  END IF;
  -- the signature covers the flags: a byte C has just read (authData >= 37 bytes)
  IF NOT authctx._webauthn_user_verified(pg_catalog.get_byte(p_authenticator_data, 32),
                                         p_user_verification) THEN
    failure := 'user_verification';
    RETURN;
  END IF;

  -- a counter that does not grow (either side non-zero): possibly cloned;
  -- the caller marks the credential out of band (_webauthn_attempt)
  IF (v_cred.sign_count <> 0 OR v_counter <> 0) AND v_counter <= v_cred.sign_count THEN
    failure := 'counter';
    stored_count := v_cred.sign_count;
    presented_count := v_counter;
    RETURN;
  END IF;

  UPDATE authctx.webauthn_credentials c
     SET sign_count = v_counter,
         last_used_at = pg_catalog.clock_timestamp()
   WHERE c.credential_id = p_credential_id;
  verified_user := v_cred.user_id;
  failure := NULL;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text, text) IS
  'internal: verify a WebAuthn assertion; the user, the credential''s owner, and why it failed';

-- One attempt, decided in the worker's own READ COMMITTED transaction (kind
-- webauthn_attempt; see the header).  p_attempt: the assertion's parts
-- (hex), rp_id, origin, login, and for a login the user the caller locked
-- (user_id) and whether that user is a member of the tenant asked for
-- (member), method and db_role.  {user_id} on success, else {} once the
-- failure's effects are written.
CREATE OR REPLACE FUNCTION authctx._webauthn_attempt(p_attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v         record;
  v_cred    bytea := pg_catalog.decode(p_attempt ->> 'credential_id', 'hex');
  v_login   boolean := coalesce((p_attempt ->> 'login')::boolean, false);
  v_failure text;
BEGIN
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'a webauthn attempt must be decided in a READ COMMITTED transaction'
      USING ERRCODE = '25000';
  END IF;
  SELECT * INTO v
    FROM authctx._webauthn_verify(v_cred,
                                  pg_catalog.decode(p_attempt ->> 'authenticator_data', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'client_data_json', 'hex'),
                                  pg_catalog.decode(p_attempt ->> 'signature', 'hex'),
                                  p_attempt ->> 'rp_id', p_attempt ->> 'origin',
                                  p_attempt ->> 'user_verification');
  v_failure := v.failure;
  IF v_failure IS NULL AND v_login THEN
    IF v.verified_user IS DISTINCT FROM (p_attempt ->> 'user_id')::uuid THEN
      -- the caller locked another user (or none): the credential moved
      v_failure := 'changed';
    ELSIF NOT coalesce((p_attempt ->> 'member')::boolean, false) THEN
      v_failure := 'not_member';
    END IF;
  END IF;
  IF v_failure IS NULL THEN
    RETURN pg_catalog.jsonb_build_object('user_id', v.verified_user);
  END IF;
  -- the challenge is already spent (deleted above) when it was found
  PERFORM authctx._webauthn_failure(p_attempt || pg_catalog.jsonb_build_object(
    'challenge', NULL,
    'user_id', coalesce(v.verified_user, v.credential_user),
    'reason', v_failure,
    'clone', v_failure = 'counter',
    'stored_count', v.stored_count,
    'presented_count', v.presented_count));
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_attempt(jsonb) IS
  'internal: decide one WebAuthn assertion in the worker''s transaction (challenge spent, checks, counter or clone mark, failure audited); {user_id} on success';

CREATE OR REPLACE FUNCTION authctx.verify_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- NULL, as for any failed assertion, when no worker could decide it
  RETURN (authctx._attempt_in_worker('webauthn_attempt',
            authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
            || pg_catalog.jsonb_build_object('login', false,
                                             'user_verification', authctx._webauthn_uv_policy(),
                                             'db_role', pg_catalog.session_user()))
          ->> 'user_id')::uuid;
END
$$;
COMMENT ON FUNCTION authctx.verify_webauthn(bytea, bytea, bytea, bytea, text, text) IS
  'verify a WebAuthn assertion against a challenge issued here; the user''s id, or NULL (the challenge is spent either way)';

CREATE OR REPLACE FUNCTION authctx.login_webauthn(credential_id bytea,
    authenticator_data bytea, client_data_json bytea, signature bytea,
    rp_id text, origin text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_user    uuid;
  v_tenant  uuid;
  v_member  boolean := false;
  v_verdict jsonb;
BEGIN
  -- a read-only transaction can issue nothing: refuse before any check
  IF pg_catalog.current_setting('transaction_read_only') = 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the credential's owner FOR SHARE (lock order, 2) and the membership (3)
  -- before the assertion is checked, as login does
  SELECT u.id INTO v_user
    FROM authctx.webauthn_credentials c
    JOIN authctx.users u ON u.id = c.user_id
   WHERE c.credential_id = login_webauthn.credential_id
     FOR SHARE OF u;
  IF v_user IS NOT NULL THEN
    SELECT t.tenant_id, t.member INTO v_tenant, v_member
      FROM authctx._login_tenant(v_user, login_webauthn.tenant) t;
  END IF;
  v_verdict := authctx._attempt_in_worker('webauthn_attempt',
                 authctx._webauthn_payload($1, $2, $3, $4, $5, $6)
                 || pg_catalog.jsonb_build_object('login', true, 'user_id', v_user,
                                                  'member', v_member, 'method', 'webauthn',
                                                  'user_verification', authctx._webauthn_uv_policy(),
                                                  'db_role', pg_catalog.session_user()));
  IF v_user IS NULL OR (v_verdict ->> 'user_id')::uuid IS DISTINCT FROM v_user THEN
    -- the challenge spend and the login_failed record were written by the
    -- worker; a passkey failure does not count toward the password lockout
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- a session, a refresh token and the login audit record
  RETURN authctx._issue_session(v_user, v_tenant, 'webauthn',
                                pg_catalog.jsonb_build_object('method', 'webauthn'));
END
$$;
COMMENT ON FUNCTION authctx.login_webauthn(bytea, bytea, bytea, bytea, text, text, text) IS
  'log in with a WebAuthn assertion: a new session and refresh token; the attempt is decided in a background worker''s transaction; failure, or no worker to decide, raises 28P01';

REVOKE ALL ON FUNCTION
  authctx._webauthn_uv_policy(),
  authctx._webauthn_user_verified(integer, text),
  authctx._webauthn_verify(bytea, bytea, bytea, bytea, text, text, text)
FROM PUBLIC;

-- refactor: the clock part of the session liveness rule in one SQL helper
-- (authctx._session_live), used by every SQL path that judges it
-- (issue 12, item 1).
CREATE FUNCTION authctx._session_live(p_expires_at timestamptz, p_last_seen_at timestamptz,
                                      p_at timestamptz, p_idle interval)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT p_expires_at OPERATOR(pg_catalog.>) p_at
     AND (p_idle OPERATOR(pg_catalog.=) interval '0'
          OR (p_last_seen_at OPERATOR(pg_catalog.+) p_idle) OPERATOR(pg_catalog.>) p_at);
$$;
COMMENT ON FUNCTION authctx._session_live(timestamptz, timestamptz, timestamptz, interval) IS
  'internal: whether a session (expiry, last seen) is neither expired nor idle at a time, for an idle timeout';

REVOKE ALL ON FUNCTION authctx._session_live(timestamptz, timestamptz, timestamptz, interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx._revoke_family_rows(p_family_id uuid, p_at timestamptz,
                                            OUT sessions integer, OUT tokens integer,
                                            OUT live integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_half  interval := authctx._cleanup_margin() / 2;
  v_idle  interval := authctx._setting('authctx.session_idle_timeout');
  v_idled integer;
BEGIN
  UPDATE authctx.refresh_tokens rt SET revoked_at = p_at
   WHERE rt.family_id = p_family_id AND rt.revoked_at IS NULL
     AND rt.expires_at > p_at - v_half;
  GET DIAGNOSTICS tokens = ROW_COUNT;
  WITH r AS (
    UPDATE authctx.sessions s SET revoked_at = p_at
     WHERE s.family_id = p_family_id AND s.revoked_at IS NULL
       AND authctx._session_live(s.expires_at, s.last_seen_at, p_at - v_half, v_idle)
    RETURNING s.expires_at, s.last_seen_at)
  SELECT count(*),
         count(*) FILTER (WHERE authctx._session_live(r.expires_at, r.last_seen_at, p_at, v_idle))
    INTO sessions, live
    FROM r;
  IF v_idle > '0' THEN
    WITH r AS (
      UPDATE authctx.sessions s SET revoked_at = p_at
       WHERE s.ctid = ANY (ARRAY(
               SELECT i.ctid FROM authctx.sessions i
                WHERE i.family_id = p_family_id AND i.revoked_at IS NULL
                  AND i.expires_at > p_at - v_half
                  AND NOT authctx._session_live(i.expires_at, i.last_seen_at, p_at - v_half, v_idle)
                  FOR NO KEY UPDATE OF i SKIP LOCKED))
      RETURNING 1)
    SELECT count(*) INTO v_idled FROM r;
    sessions := sessions + v_idled;
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._revoke_family_rows(uuid, timestamptz) IS
  'internal: revoke a login family''s rows for a caller holding its locks; returns sessions, tokens and live sessions revoked';

CREATE OR REPLACE FUNCTION authctx.list_sessions(user_id uuid)
RETURNS TABLE (session_id uuid, tenant_id uuid, created_at timestamptz,
               last_seen_at timestamptz, expires_at timestamptz, metadata jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.id, s.tenant_id, s.created_at, s.last_seen_at, s.expires_at, s.metadata
    FROM authctx.users u
    JOIN authctx.sessions s ON s.user_id = u.id,
         (SELECT clock_timestamp() AS now,
                 authctx._setting('authctx.session_idle_timeout') AS idle) c
   WHERE u.id = list_sessions.user_id
     AND u.disabled_at IS NULL
     AND NOT authctx._revoked_by_user(s.created_at, s.family_id,
                                      u.sessions_revoked_before, u.sessions_revoked_except)
     AND ((s.revoked_at IS NULL
           AND authctx._session_live(s.expires_at, s.last_seen_at, c.now, c.idle))
          OR EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                      WHERE rt.family_id = s.family_id AND rt.session_id = s.id
                        AND rt.revoked_at IS NULL AND rt.spent_at IS NULL
                        AND rt.expires_at > c.now))
   ORDER BY s.created_at, s.id;
$$;
COMMENT ON FUNCTION authctx.list_sessions(uuid) IS
  'a user''s live sessions, and the session of every login family that can still be refreshed; without secrets';

CREATE OR REPLACE FUNCTION authctx.cleanup() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_idle   interval := authctx._setting('authctx.session_idle_timeout');
  -- rows stay a little past their end: last-seen times arrive late, and
  -- revocations leave rows dead for more than half of it alone
  v_margin interval := authctx._cleanup_margin();
  v_total  bigint := 0;
BEGIN
  -- a session row stays while its login family can still be refreshed
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$(t.revoked_at < $1 - $3
        OR NOT authctx._session_live(t.expires_at, t.last_seen_at, $1 - $3, $2))
       AND NOT EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                        WHERE rt.family_id = t.family_id AND rt.revoked_at IS NULL
                          AND rt.spent_at IS NULL AND rt.expires_at > $1)$c$,
    v_now, v_idle, v_margin, NULL);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys and expired WebAuthn challenges in small batches; returns rows removed';


-- jwt: authctx.amr() and authctx.claims(); sessions record how their login
-- authenticated (sessions.amr: pwd for login, webauthn for login_webauthn,
-- empty for create_session; a refresh keeps its family's), and auth_begin
-- publishes it.  Sessions issued by 0.1.0 have an empty amr: how they were
-- authenticated was not recorded.
-- (no fast default: the rows are rewritten, so the catalog carries no
-- "missing value" that a fresh install lacks)
ALTER TABLE authctx.sessions ADD COLUMN amr text[];
UPDATE authctx.sessions SET amr = '{}';
ALTER TABLE authctx.sessions ALTER COLUMN amr SET DEFAULT '{}',
  ALTER COLUMN amr SET NOT NULL;
DROP FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb);
CREATE FUNCTION authctx._new_pair(p_user_id uuid, p_tenant_id uuid, p_family_id uuid,
                                  p_parent_id uuid, p_metadata jsonb, p_amr text[])
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_session authctx.token := authctx._token_new('session');
  v_refresh authctx.token := authctx._token_new('refresh');
  v_now     timestamptz := authctx._issue_time(p_user_id);
  v_expires timestamptz := v_now + authctx._setting('authctx.session_lifetime');
  v_result  authctx.login_result;
BEGIN
  INSERT INTO authctx.sessions (id, user_id, tenant_id, family_id, verifier,
                                created_at, last_seen_at, expires_at, metadata, amr)
  VALUES (authctx._token_id(v_session), p_user_id, p_tenant_id, p_family_id,
          authctx._token_verifier(v_session), v_now, v_now, v_expires,
          coalesce(p_metadata, '{}'::jsonb), coalesce(p_amr, '{}'::text[]));
  INSERT INTO authctx.refresh_tokens (id, family_id, session_id, user_id, tenant_id,
                                      parent_id, verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_refresh), p_family_id, authctx._token_id(v_session),
          p_user_id, p_tenant_id, p_parent_id, authctx._token_verifier(v_refresh),
          v_now, v_now + authctx._setting('authctx.refresh_lifetime'));
  v_result := ROW(v_session, v_refresh, authctx._token_id(v_session), p_tenant_id, v_expires);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb, text[]) IS 'internal: issue a session and refresh token in a family, with the login''s authentication methods';
CREATE OR REPLACE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_family uuid := gen_random_uuid();
  v_result authctx.login_result;
BEGIN
  PERFORM 1 FROM authctx.users u
    WHERE u.id = _issue_session.user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  IF _issue_session.tenant_id IS NOT NULL
     AND NOT authctx._lock_membership(_issue_session.tenant_id, _issue_session.user_id) THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the session's amr (RFC 8176 names), published by auth_begin as authctx.amr()
  v_result := authctx._new_pair(_issue_session.user_id, _issue_session.tenant_id, v_family,
                                NULL, _issue_session.metadata,
                                CASE _issue_session.method
                                  WHEN 'password' THEN ARRAY['pwd']
                                  WHEN 'webauthn' THEN ARRAY['webauthn']
                                  ELSE '{}'::text[] END);
  PERFORM authctx._audit('login', _issue_session.user_id, _issue_session.tenant_id,
                         v_result.session_id,
                         jsonb_build_object('method', _issue_session.method, 'family_id', v_family));
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._issue_session(uuid, uuid, text, jsonb) IS
  'internal: create a session and refresh token in a new family for an authenticated user, audit login';
CREATE OR REPLACE FUNCTION authctx._refresh_pair(p_token authctx.refresh_tokens, p_grace boolean)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_meta   jsonb;
  v_amr    text[];
  v_result authctx.login_result;
BEGIN
  SELECT s.metadata, s.amr INTO v_meta, v_amr FROM authctx.sessions s
   WHERE s.family_id = p_token.family_id
   ORDER BY s.id = p_token.session_id DESC, s.created_at DESC
   LIMIT 1;
  v_result := authctx._new_pair(p_token.user_id, p_token.tenant_id, p_token.family_id,
                                p_token.id, v_meta, v_amr);
  PERFORM authctx._audit('refresh', p_token.user_id, p_token.tenant_id, v_result.session_id,
                         CASE WHEN p_grace
                              THEN jsonb_build_object('family_id', p_token.family_id, 'grace', true)
                              ELSE jsonb_build_object('family_id', p_token.family_id) END);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._refresh_pair(authctx.refresh_tokens, boolean) IS
  'internal: issue the new pair of a refresh in the spent token''s family, with its metadata, and audit it';
REVOKE ALL ON FUNCTION authctx._new_pair(uuid, uuid, uuid, uuid, jsonb, text[]) FROM PUBLIC;
CREATE FUNCTION authctx.amr() RETURNS text[]
  AS 'MODULE_PATHNAME', 'authctx_amr' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.amr() IS 'how the context''s user authenticated (a JWT''s amr claim; a session''s login methods: pwd, webauthn; empty for create_session and API keys), or NULL';

CREATE FUNCTION authctx.claims() RETURNS jsonb
  AS 'MODULE_PATHNAME', 'authctx_claims' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION authctx.claims() IS 'the verified claims of the context''s JWT, or NULL (no context, or not a JWT)';
GRANT EXECUTE ON FUNCTION authctx.amr(), authctx.claims() TO PUBLIC;
DROP TRIGGER cache_invalidate_update ON authctx.sessions;
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.sessions FOR EACH ROW
  WHEN ((OLD.id, OLD.user_id, OLD.tenant_id, OLD.verifier, OLD.expires_at, OLD.revoked_at,
         OLD.amr)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.tenant_id, NEW.verifier, NEW.expires_at, NEW.revoked_at,
         NEW.amr))
  EXECUTE FUNCTION authctx._cache_invalidate('token', 's');
ALTER TABLE authctx.sessions ENABLE ALWAYS TRIGGER cache_invalidate_update;

-- jwt: JWT entries in the session cache depend on their user's slot, which
-- identity links changed or removed bump (src/sql/65_cache.sql)
-- identity links: a JWT's cached entry (src/jwt.c) is its user's; a link
-- changed or removed ----------------------------------------------------------
CREATE TRIGGER cache_invalidate_update
  AFTER UPDATE ON authctx.oauth_identities FOR EACH ROW
  WHEN ((OLD.provider, OLD.subject, OLD.user_id) IS DISTINCT FROM (NEW.provider, NEW.subject, NEW.user_id))
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_delete
  AFTER DELETE ON authctx.oauth_identities FOR EACH ROW
  EXECUTE FUNCTION authctx._cache_invalidate('user', 'user_id');
CREATE TRIGGER cache_invalidate_truncate
  AFTER TRUNCATE ON authctx.oauth_identities FOR EACH STATEMENT
  EXECUTE FUNCTION authctx._cache_invalidate('all');
ALTER TABLE authctx.oauth_identities ENABLE ALWAYS TRIGGER cache_invalidate_update,
  ENABLE ALWAYS TRIGGER cache_invalidate_delete,
  ENABLE ALWAYS TRIGGER cache_invalidate_truncate;


-- flows: account flows (issue 16): one-time tokens of kind axo_ (email
-- verification, password reset, magic links, invitations), TOTP second
-- factors with recovery codes, users.email_verified_at, user_info; set_email
-- clears the verification of a new address; cleanup() removes dead
-- one-time tokens; a magic-link login's amr is {otp_email}.  The token type's C code reads 0.1.0 tokens unchanged.
COMMENT ON TYPE authctx.token IS
  'bearer token: kind prefix (axs_ session, axr_ refresh, axk_ API key, axo_ one-time), public id, 256-bit secret, checksum';
COMMENT ON FUNCTION authctx._token_new(text) IS 'internal: a fresh random token of kind session, refresh, api_key or one_time';
ALTER TABLE authctx.users ADD COLUMN email_verified_at timestamptz;
COMMENT ON COLUMN authctx.users.email_verified_at IS
  'when the current email was verified (authctx.verify_email); NULL: not verified, and cleared when the email changes';

CREATE OR REPLACE FUNCTION authctx.set_email(user_id uuid, email text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._check_email(set_email.email);
  PERFORM authctx._require_user(set_email.user_id);
  BEGIN
    -- a new address is not verified (verify_email, 68_flows.sql)
    UPDATE authctx.users AS u
       SET email = set_email.email,
           email_verified_at = CASE
             WHEN authctx._email_key(u.email) OPERATOR(pg_catalog.=) authctx._email_key(set_email.email)
             THEN u.email_verified_at END
     WHERE u.id OPERATOR(pg_catalog.=) set_email.user_id;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a user with this email address already exists'
      USING ERRCODE = 'unique_violation',
            DETAIL = 'Email addresses are compared after Unicode normalization (NFC) and case folding.';
  END;
END
$$;
COMMENT ON FUNCTION authctx.set_email(uuid, text) IS
  'change a user''s email (unique after Unicode normalization and case folding); sessions are untouched; a different address is no longer verified';


CREATE OR REPLACE FUNCTION authctx.cleanup() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_idle   interval := authctx._setting('authctx.session_idle_timeout');
  -- rows stay a little past their end: last-seen times arrive late, and
  -- revocations leave rows dead for more than half of it alone
  v_margin interval := authctx._cleanup_margin();
  v_total  bigint := 0;
BEGIN
  -- a session row stays while its login family can still be refreshed
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$(t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3
        OR ($2 > interval '0' AND t.last_seen_at + $2 < $1 - $3))
       AND NOT EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                        WHERE rt.family_id = t.family_id AND rt.revoked_at IS NULL
                          AND rt.spent_at IS NULL AND rt.expires_at > $1)$c$,
    v_now, v_idle, v_margin, NULL);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  -- one-time tokens (68_flows.sql): dead once expired, spent or revoked
  v_total := v_total + authctx._delete_in_batches(
    'authctx.one_time_tokens',
    $c$t.expires_at < $1 OR t.spent_at IS NOT NULL OR t.revoked_at IS NOT NULL$c$,
    v_now, v_idle, v_margin, NULL);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys, expired WebAuthn challenges and dead one-time tokens in small batches; returns rows removed';


CREATE OR REPLACE FUNCTION authctx._issue_session(user_id uuid, tenant_id uuid, method text, metadata jsonb)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_family uuid := gen_random_uuid();
  v_result authctx.login_result;
BEGIN
  PERFORM 1 FROM authctx.users u
    WHERE u.id = _issue_session.user_id AND u.disabled_at IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  IF _issue_session.tenant_id IS NOT NULL
     AND NOT authctx._lock_membership(_issue_session.tenant_id, _issue_session.user_id) THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  -- the session's amr (RFC 8176 names), published by auth_begin as authctx.amr()
  v_result := authctx._new_pair(_issue_session.user_id, _issue_session.tenant_id, v_family,
                                NULL, _issue_session.metadata,
                                CASE _issue_session.method
                                  WHEN 'password' THEN ARRAY['pwd']
                                  WHEN 'webauthn' THEN ARRAY['webauthn']
                                  WHEN 'magic_link' THEN ARRAY['otp_email']
                                  ELSE '{}'::text[] END);
  PERFORM authctx._audit('login', _issue_session.user_id, _issue_session.tenant_id,
                         v_result.session_id,
                         jsonb_build_object('method', _issue_session.method, 'family_id', v_family));
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION authctx._issue_session(uuid, uuid, text, jsonb) IS
  'internal: create a session and refresh token in a new family for an authenticated user, audit login';


CREATE TABLE authctx.one_time_tokens (
  id          uuid PRIMARY KEY,       -- the token's public id
  purpose     text NOT NULL
              CHECK (purpose IN ('verify_email', 'reset_password', 'magic_link', 'invite')),
  user_id     uuid REFERENCES authctx.users (id) ON DELETE CASCADE,
  tenant_id   uuid REFERENCES authctx.tenants (id) ON DELETE CASCADE,
  email_key   bytea NOT NULL,         -- authctx._email_key of the address it was sent to
  role        text,                   -- invite: the role to grant
  verifier    bytea NOT NULL,         -- keyed BLAKE2b of the token; never the secret
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  expires_at  timestamptz NOT NULL,
  spent_at    timestamptz,
  revoked_at  timestamptz,
  CONSTRAINT one_time_tokens_subject_check CHECK (
    CASE WHEN purpose OPERATOR(pg_catalog.=) 'invite'
         THEN tenant_id IS NOT NULL AND role IS NOT NULL AND user_id IS NULL
         ELSE user_id IS NOT NULL AND tenant_id IS NULL AND role IS NULL END)
);
CREATE INDEX one_time_tokens_user_idx ON authctx.one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_invite_idx ON authctx.one_time_tokens (tenant_id, email_key);
CREATE INDEX one_time_tokens_expires_idx ON authctx.one_time_tokens (expires_at);
COMMENT ON TABLE authctx.one_time_tokens IS
  'one-time tokens (axo_): email verification, password reset, magic links, invitations; single use, verifier only';

CREATE TABLE authctx.totp_factors (
  user_id         uuid PRIMARY KEY REFERENCES authctx.users (id) ON DELETE CASCADE,
  secret          bytea,              -- active secret, sealed (crypto_secretbox); NULL until confirmed
  pending_secret  bytea,              -- secret waiting for confirm_totp, sealed
  last_step       bigint,             -- newest 30-second step accepted (each step's code once)
  enabled_at      timestamptz,
  pending_at      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE authctx.totp_factors IS
  'TOTP second factors (RFC 6238): secrets sealed under authctx.secret_key, never in clear';

CREATE TABLE authctx.totp_recovery_codes (
  user_id     uuid NOT NULL REFERENCES authctx.users (id) ON DELETE CASCADE,
  verifier    bytea NOT NULL,         -- keyed BLAKE2b of the code; never the code
  created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  spent_at    timestamptz,
  PRIMARY KEY (user_id, verifier)
);
COMMENT ON TABLE authctx.totp_recovery_codes IS 'single-use TOTP recovery codes, as verifiers';

REVOKE ALL ON authctx.one_time_tokens, authctx.totp_factors, authctx.totp_recovery_codes FROM PUBLIC;
-- factors and recovery codes are dumped; one-time tokens are not (see above)
SELECT pg_catalog.pg_extension_config_dump('authctx.totp_factors', '');
SELECT pg_catalog.pg_extension_config_dump('authctx.totp_recovery_codes', '');

-- C primitives (src/otp.c); internal.
CREATE FUNCTION authctx._totp_enroll(user_id uuid, account text, OUT sealed bytea, OUT uri text)
  RETURNS record
  AS 'MODULE_PATHNAME', 'authctx_totp_enroll'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._totp_enroll(uuid, text) IS
  'internal: a fresh TOTP secret sealed for the user under authctx.secret_key, and its otpauth:// URI';
CREATE FUNCTION authctx._totp_match(user_id uuid, sealed bytea, code text, after_step bigint,
                                    at timestamptz)
  RETURNS bigint
  AS 'MODULE_PATHNAME', 'authctx_totp_match'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._totp_match(uuid, bytea, text, bigint, timestamptz) IS
  'internal: the time step (at''s or one either side, newer than after_step) whose TOTP code equals code, or NULL';
CREATE FUNCTION authctx._totp_code(key bytea, unix_time bigint, digits integer)
  RETURNS text
  AS 'MODULE_PATHNAME', 'authctx_totp_code'
  LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION authctx._totp_code(bytea, bigint, integer) IS
  'internal: the RFC 6238 TOTP code (HMAC-SHA1, 30 s) of a raw key at a Unix time (test vectors)';
CREATE FUNCTION authctx._recovery_codes(n integer)
  RETURNS text[]
  AS 'MODULE_PATHNAME', 'authctx_recovery_codes'
  LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authctx._recovery_codes(integer) IS
  'internal: n fresh recovery codes (100 bits each)';
CREATE FUNCTION authctx._recovery_verifier(user_id uuid, code text)
  RETURNS bytea
  AS 'MODULE_PATHNAME', 'authctx_recovery_verifier'
  LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION authctx._recovery_verifier(uuid, text) IS
  'internal: the stored verifier of a recovery code of a user, or NULL for text that is no recovery code';

-- internal helpers ----------------------------------------------------------

-- A positive lifetime, or 22023.
CREATE FUNCTION authctx._check_ttl(ttl interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF ttl IS NULL OR ttl OPERATOR(pg_catalog.<=) interval '0' THEN
    RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;
COMMENT ON FUNCTION authctx._check_ttl(interval) IS 'internal: raises 22023 unless the interval is positive';

-- The lock under which a new one-time token supersedes the older ones of
-- its scope (user and purpose; tenant and email for invitations): a
-- transaction advisory lock on a keyed hash of the scope, keyed with the
-- per-database secret like the account lock.
CREATE FUNCTION authctx._lock_one_time_scope(p_scope bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lock bigint;
BEGIN
  SELECT authctx._keyed_hash64('authctx one-time '::bytea OPERATOR(pg_catalog.||) p_scope, s.secret)
    INTO v_lock FROM authctx.database_secret s;
  IF v_lock IS NULL THEN
    RAISE EXCEPTION 'authctx.database_secret is empty'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Reinstall the extension, or insert a random 32-byte secret.';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(v_lock);
END
$$;
COMMENT ON FUNCTION authctx._lock_one_time_scope(bytea) IS
  'internal: serialise the making of one-time tokens of one scope (user and purpose, or tenant and email)';

-- Spend a one-time token of a purpose: the row when the text is a live
-- token of that purpose whose secret matches, now spent by this
-- transaction; NULL otherwise (the caller raises its generic error).  The
-- single-use guarantee is the UPDATE's WHERE clause (see the header).
CREATE FUNCTION authctx._spend_one_time_token(p_token text, p_purpose text)
RETURNS authctx.one_time_tokens
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tok authctx.token := authctx._parse_token(p_token, 'one_time');
  v_row authctx.one_time_tokens;
  v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
  IF v_tok IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_row FROM authctx.one_time_tokens t
   WHERE t.id OPERATOR(pg_catalog.=) authctx._token_id(v_tok);
  IF NOT FOUND
     OR NOT authctx._verifier_equal(v_row.verifier, authctx._token_verifier(v_tok))
     OR v_row.purpose OPERATOR(pg_catalog.<>) p_purpose THEN
    RETURN NULL;
  END IF;
  UPDATE authctx.one_time_tokens t SET spent_at = v_now
   WHERE t.id OPERATOR(pg_catalog.=) v_row.id
     AND t.spent_at IS NULL AND t.revoked_at IS NULL
     AND t.expires_at OPERATOR(pg_catalog.>) v_now
  RETURNING * INTO v_row;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN v_row;
END
$$;
COMMENT ON FUNCTION authctx._spend_one_time_token(text, text) IS
  'internal: spend a live one-time token of a purpose (one UPDATE that only one transaction can satisfy); NULL when it is none';

-- The user a spent token names, when its email is still the one the token
-- was sent to; NULL otherwise.
CREATE FUNCTION authctx._one_time_user(p_row authctx.one_time_tokens) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT u.id FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) p_row.user_id
     AND authctx._email_key(u.email) OPERATOR(pg_catalog.=) p_row.email_key;
$$;
COMMENT ON FUNCTION authctx._one_time_user(authctx.one_time_tokens) IS
  'internal: the user of a one-time token, if the user''s email is still the one the token was sent to';

-- Make a one-time token: supersede the unspent ones of the same scope,
-- store the verifier, audit.  The caller has checked its arguments.
CREATE FUNCTION authctx._issue_one_time_token(p_purpose text, p_user_id uuid, p_tenant_id uuid,
                                              p_email_key bytea, p_role text, p_ttl interval)
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tok authctx.token := authctx._token_new('one_time');
  v_now timestamptz := pg_catalog.clock_timestamp();
BEGIN
  IF p_purpose OPERATOR(pg_catalog.=) 'invite' THEN
    PERFORM authctx._lock_one_time_scope(pg_catalog.uuid_send(p_tenant_id) OPERATOR(pg_catalog.||) p_email_key);
    UPDATE authctx.one_time_tokens t SET revoked_at = v_now
     WHERE t.tenant_id OPERATOR(pg_catalog.=) p_tenant_id
       AND t.email_key OPERATOR(pg_catalog.=) p_email_key
       AND t.purpose OPERATOR(pg_catalog.=) 'invite'
       AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  ELSE
    PERFORM authctx._lock_one_time_scope(pg_catalog.uuid_send(p_user_id)
                                         OPERATOR(pg_catalog.||) pg_catalog.convert_to(p_purpose, 'UTF8'));
    UPDATE authctx.one_time_tokens t SET revoked_at = v_now
     WHERE t.user_id OPERATOR(pg_catalog.=) p_user_id
       AND t.purpose OPERATOR(pg_catalog.=) p_purpose
       AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  END IF;
  INSERT INTO authctx.one_time_tokens (id, purpose, user_id, tenant_id, email_key, role,
                                       verifier, created_at, expires_at)
  VALUES (authctx._token_id(v_tok), p_purpose, p_user_id, p_tenant_id, p_email_key, p_role,
          authctx._token_verifier(v_tok), v_now, v_now OPERATOR(pg_catalog.+) p_ttl);
  PERFORM authctx._audit('one_time_token_created', p_user_id, p_tenant_id, NULL,
                         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                           'purpose', p_purpose, 'token_id', authctx._token_id(v_tok),
                           'role', p_role, 'expires_at', v_now OPERATOR(pg_catalog.+) p_ttl)));
  RETURN v_tok;
END
$$;
COMMENT ON FUNCTION authctx._issue_one_time_token(text, uuid, uuid, bytea, text, interval) IS
  'internal: make a one-time token, superseding the unspent ones of its scope, and audit it';

-- Record a failed magic-link login in a transaction of its own (like a
-- failed password login), then raise 28P01; 55000 when it cannot be
-- recorded.  Called holding no lock the worker needs.
CREATE FUNCTION authctx._one_time_login_failed(p_user_id uuid, p_reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT coalesce(authctx._autonomous('login_failed', pg_catalog.jsonb_build_object(
    'user_id', p_user_id,
    'reason', p_reason,
    'method', 'magic_link',
    'count', false,
    'db_role', pg_catalog.session_user())), false) THEN
    RAISE EXCEPTION 'could not record a failed login' USING ERRCODE = '55000';
  END IF;
  RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
END
$$;
COMMENT ON FUNCTION authctx._one_time_login_failed(uuid, text) IS
  'internal: record a failed magic-link login durably, then raise 28P01';

-- one-time tokens: the public functions -------------------------------------

CREATE FUNCTION authctx.create_one_time_token(user_id uuid, purpose text,
                                              ttl interval DEFAULT '15 minutes')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_key bytea;
BEGIN
  IF create_one_time_token.purpose IS NULL
     OR create_one_time_token.purpose OPERATOR(pg_catalog.<>) ALL
        (ARRAY['verify_email', 'reset_password', 'magic_link']) THEN
    RAISE EXCEPTION 'invalid one-time token purpose'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A purpose is verify_email, reset_password or magic_link; invitations are made by authctx.invite_member.';
  END IF;
  PERFORM authctx._check_ttl(create_one_time_token.ttl);
  PERFORM authctx._require_user(create_one_time_token.user_id);
  SELECT authctx._email_key(u.email) INTO v_key
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) create_one_time_token.user_id;
  RETURN authctx._issue_one_time_token(create_one_time_token.purpose, create_one_time_token.user_id,
                                       NULL, v_key, NULL, create_one_time_token.ttl);
END
$$;
COMMENT ON FUNCTION authctx.create_one_time_token(uuid, text, interval) IS
  'a single-use token (axo_) for verify_email, reset_password or magic_link, bound to the user''s current email; supersedes the user''s older unspent tokens of that purpose';

CREATE FUNCTION authctx.verify_email(token text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row  authctx.one_time_tokens := authctx._spend_one_time_token(verify_email.token, 'verify_email');
  v_user uuid;
BEGIN
  IF v_row.id IS NOT NULL THEN
    UPDATE authctx.users u SET email_verified_at = pg_catalog.clock_timestamp()
     WHERE u.id OPERATOR(pg_catalog.=) authctx._one_time_user(v_row)
    RETURNING u.id INTO v_user;
  END IF;
  IF v_user IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._audit('email_verified', v_user, NULL, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id));
  RETURN v_user;
END
$$;
COMMENT ON FUNCTION authctx.verify_email(text) IS
  'spend a verify_email token: marks the user''s email verified and returns the user id; 28000 for any bad token';

CREATE FUNCTION authctx.reset_password(token text, new_password text) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row      authctx.one_time_tokens := authctx._spend_one_time_token(reset_password.token, 'reset_password');
  v_user     uuid;
  v_sessions integer;
  v_tokens   integer;
BEGIN
  IF v_row.id IS NOT NULL THEN
    v_user := authctx._one_time_user(v_row);
  END IF;
  IF v_user IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  -- the length rules (22023) undo the spend with everything else
  PERFORM authctx.set_password(v_user, reset_password.new_password);
  -- every session and refresh token, the caller's own too: the reset
  -- logs nobody in, and whoever had the old password is out
  v_sessions := authctx.revoke_user_sessions(v_user);
  UPDATE authctx.one_time_tokens t SET revoked_at = pg_catalog.clock_timestamp()
   WHERE t.user_id OPERATOR(pg_catalog.=) v_user
     AND t.spent_at IS NULL AND t.revoked_at IS NULL;
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  PERFORM authctx._audit('password_reset', v_user, NULL, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id,
                                                       'revoked_sessions', v_sessions,
                                                       'revoked_one_time_tokens', v_tokens));
  RETURN v_user;
END
$$;
COMMENT ON FUNCTION authctx.reset_password(text, text) IS
  'spend a reset_password token: set the password (length rules 22023, token then unspent), revoke every session, refresh token and one-time token of the user; returns the user id; 28000 for any bad token';

CREATE FUNCTION authctx.login_with_token(token text, tenant text DEFAULT NULL)
RETURNS authctx.login_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row      authctx.one_time_tokens;
  v_user     uuid;
  v_disabled timestamptz;
  v_locked   timestamptz;
  v_tenant   uuid;
BEGIN
  -- nothing can be issued nor a failure recorded in a read-only transaction
  IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on' THEN
    RAISE EXCEPTION 'login failed' USING ERRCODE = '28P01';
  END IF;
  v_row := authctx._spend_one_time_token(login_with_token.token, 'magic_link');
  IF v_row.id IS NOT NULL THEN
    v_user := authctx._one_time_user(v_row);
  END IF;
  IF v_user IS NULL THEN
    PERFORM authctx._one_time_login_failed(v_row.user_id, 'invalid_token');
  END IF;
  SELECT u.disabled_at INTO v_disabled FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) v_user;
  SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t
   WHERE t.user_id OPERATOR(pg_catalog.=) v_user;
  IF v_disabled IS NOT NULL THEN
    PERFORM authctx._one_time_login_failed(v_user, 'disabled');
  ELSIF v_locked OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() THEN
    -- the account's lockout holds for links as for passwords; the link
    -- stays unspent (our error undoes the spend)
    PERFORM authctx._one_time_login_failed(v_user, 'locked');
  END IF;
  IF login_with_token.tenant IS NOT NULL THEN
    v_tenant := authctx._resolve_tenant(login_with_token.tenant);
    IF v_tenant IS NULL OR NOT authctx._lock_membership(v_tenant, v_user) THEN
      PERFORM authctx._one_time_login_failed(v_user, 'not_member');
    END IF;
  ELSE
    v_tenant := authctx._member_tenant(v_user, NULL, false);
  END IF;
  RETURN authctx._issue_session(v_user, v_tenant, 'magic_link', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION authctx.login_with_token(text, text) IS
  'magic-link login: spend a magic_link token for a session and refresh token (amr {otp_email}); any failure 28P01, recorded like a failed login';

CREATE FUNCTION authctx.invite_member(tenant text, email text, role text DEFAULT 'member',
                                      ttl interval DEFAULT '7 days')
RETURNS authctx.token
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_tenant uuid;
BEGIN
  PERFORM authctx._check_email(invite_member.email);
  PERFORM authctx._check_role(invite_member.role);
  PERFORM authctx._check_ttl(invite_member.ttl);
  v_tenant := authctx._require_tenant(invite_member.tenant);
  RETURN authctx._issue_one_time_token('invite', NULL, v_tenant,
                                       authctx._email_key(invite_member.email),
                                       invite_member.role, invite_member.ttl);
END
$$;
COMMENT ON FUNCTION authctx.invite_member(text, text, text, interval) IS
  'an invitation token (axo_, purpose invite) for an email to join a tenant with a role; supersedes older unspent invitations of that email to that tenant';

CREATE FUNCTION authctx.accept_invite(token text, user_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_row authctx.one_time_tokens := authctx._spend_one_time_token(accept_invite.token, 'invite');
  v_key bytea;
BEGIN
  IF v_row.id IS NULL THEN
    RAISE EXCEPTION 'invalid token' USING ERRCODE = '28000';
  END IF;
  PERFORM authctx._require_user(accept_invite.user_id);
  SELECT authctx._email_key(u.email) INTO v_key
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) accept_invite.user_id;
  -- our error undoes the spend: the invitation stays for its addressee
  IF v_key IS DISTINCT FROM v_row.email_key THEN
    RAISE EXCEPTION 'the invitation was sent to another email address'
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Only the user whose email received the invitation can accept it.';
  END IF;
  PERFORM authctx.add_member(v_row.tenant_id::text, accept_invite.user_id, v_row.role);
  PERFORM authctx._audit('invite_accepted', accept_invite.user_id, v_row.tenant_id, NULL,
                         pg_catalog.jsonb_build_object('token_id', v_row.id, 'role', v_row.role));
  RETURN v_row.tenant_id;
END
$$;
COMMENT ON FUNCTION authctx.accept_invite(text, uuid) IS
  'spend an invitation: the user (whose email must be the invited one, else 42501 and the invitation stays) joins the tenant with the invited role; returns the tenant id; 28000 for any bad token';

-- TOTP ----------------------------------------------------------------------

CREATE FUNCTION authctx.enroll_totp(user_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_email text;
  v_new   record;
BEGIN
  PERFORM authctx._require_user(enroll_totp.user_id);
  SELECT u.email INTO v_email FROM authctx.users u
   WHERE u.id OPERATOR(pg_catalog.=) enroll_totp.user_id;
  v_new := authctx._totp_enroll(enroll_totp.user_id, v_email);
  INSERT INTO authctx.totp_factors AS f (user_id, pending_secret, pending_at)
  VALUES (enroll_totp.user_id, v_new.sealed, pg_catalog.clock_timestamp())
  ON CONFLICT ON CONSTRAINT totp_factors_pkey DO UPDATE
    SET pending_secret = excluded.pending_secret, pending_at = excluded.pending_at;
  RETURN v_new.uri;
END
$$;
COMMENT ON FUNCTION authctx.enroll_totp(uuid) IS
  'start (or restart) a TOTP enrolment: returns the otpauth:// URI of a new secret, pending until confirm_totp; an active factor stays active until then; 55000 without authctx.secret_key';

CREATE FUNCTION authctx.confirm_totp(user_id uuid, code text) RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_factor authctx.totp_factors;
  v_step   bigint;
  v_codes  text[];
BEGIN
  PERFORM authctx._require_user(confirm_totp.user_id);
  SELECT * INTO v_factor FROM authctx.totp_factors f
   WHERE f.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id FOR UPDATE;
  IF v_factor.pending_secret IS NULL THEN
    RAISE EXCEPTION 'no TOTP enrolment is pending for this user'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Call authctx.enroll_totp(user_id) first.';
  END IF;
  IF confirm_totp.code IS NOT NULL THEN
    v_step := authctx._totp_match(confirm_totp.user_id, v_factor.pending_secret,
                                  pg_catalog.btrim(confirm_totp.code), -1,
                                  pg_catalog.clock_timestamp());
  END IF;
  IF v_step IS NULL THEN
    RAISE EXCEPTION 'invalid code' USING ERRCODE = '28000';
  END IF;
  UPDATE authctx.totp_factors f
     SET secret = f.pending_secret, pending_secret = NULL, pending_at = NULL,
         last_step = v_step, enabled_at = pg_catalog.clock_timestamp()
   WHERE f.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id;
  DELETE FROM authctx.totp_recovery_codes r WHERE r.user_id OPERATOR(pg_catalog.=) confirm_totp.user_id;
  v_codes := authctx._recovery_codes(10);
  INSERT INTO authctx.totp_recovery_codes (user_id, verifier)
  SELECT confirm_totp.user_id, authctx._recovery_verifier(confirm_totp.user_id, c)
    FROM pg_catalog.unnest(v_codes) c;
  PERFORM authctx._audit('totp_enabled', confirm_totp.user_id, NULL, NULL,
                         pg_catalog.jsonb_build_object('recovery_codes', 10,
                                                       'replaced', v_factor.secret IS NOT NULL));
  RETURN v_codes;
END
$$;
COMMENT ON FUNCTION authctx.confirm_totp(uuid, text) IS
  'activate the pending TOTP secret with a current code (else 28000); returns 10 single-use recovery codes, shown once';

-- Record a failed second factor in transactions of their own: the lockout
-- count (the same login_failed record as a password failure; not for an
-- attempt refused because the account is locked, which does not count)
-- and the totp_failed event.  55000 when either cannot be written.
CREATE FUNCTION authctx._totp_failed(p_ctx authctx.context, p_reason text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base interval;
  v_max  interval;
BEGIN
  IF p_reason OPERATOR(pg_catalog.<>) 'locked' THEN
    -- our settings travel with the record (the worker does not see them)
    v_base := authctx._setting('authctx.lockout_base_delay');
    v_max := authctx._setting('authctx.lockout_max_delay');
    PERFORM authctx._autonomous_call('login_failed', pg_catalog.jsonb_build_object(
      'user_id', p_ctx.user_id,
      'reason', p_reason,
      'method', 'totp',
      'count', true,
      'threshold', pg_catalog.current_setting('authctx.lockout_threshold')::integer,
      'base_delay', pg_catalog.date_part('epoch', v_base),
      'max_delay', pg_catalog.date_part('epoch', v_max),
      'db_role', pg_catalog.session_user()));
  END IF;
  PERFORM authctx._autonomous_call('audit', pg_catalog.jsonb_build_object(
    'event', 'totp_failed',
    'user_id', p_ctx.user_id,
    'tenant_id', p_ctx.tenant_id,
    'session_id', p_ctx.session_id,
    'db_role', pg_catalog.session_user(),
    'detail', pg_catalog.jsonb_build_object('reason', p_reason)));
END
$$;
COMMENT ON FUNCTION authctx._totp_failed(authctx.context, text) IS
  'internal: count a failed TOTP verification toward the lockout (unless refused as locked) and audit totp_failed, durably (55000 otherwise)';

-- Step a session up: add an authentication method (RFC 8176 name) to its
-- amr for the rest of its life (refresh carries a login's amr on, src/sql/
-- 50_session.sql); auth_begin publishes it from the next call on (the
-- cache trigger watches amr).  The caller holds the user's factor row; the
-- session row is locked after it, and no revoker takes them the other way
-- round.
CREATE FUNCTION authctx._step_up_session(p_session_id uuid, p_method text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE authctx.sessions s
     SET amr = s.amr OPERATOR(pg_catalog.||) ARRAY[p_method]
   WHERE s.id OPERATOR(pg_catalog.=) p_session_id
     AND NOT (p_method OPERATOR(pg_catalog.=) ANY (s.amr));
END
$$;
COMMENT ON FUNCTION authctx._step_up_session(uuid, text) IS
  'internal: add an authentication method to a session''s amr (step-up), visible from the next auth_begin';

-- The second factor's own streak.  TOTP failures count toward the
-- account's lockout (login_throttle) like wrong passwords, but a
-- successful password login clears that streak: someone who knows the
-- password could log in again after every few wrong codes and guess on
-- for ever.  So the codes are also locked by their own streak, read from
-- the durable record of it: the totp_failed events (reason bad_code) of
-- the user since the last totp_verified, within twice lockout_max_delay.
-- At lockout_threshold of them, codes are refused until the last failure
-- plus lockout_base_delay * 2^(n - threshold), at most lockout_max_delay:
-- the password lockout's rule, which no password login resets.
CREATE FUNCTION authctx._totp_locked(p_user_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := pg_catalog.clock_timestamp();
  v_threshold integer := greatest(pg_catalog.current_setting('authctx.lockout_threshold')::integer, 1);
  v_base      interval := authctx._setting('authctx.lockout_base_delay');
  v_max       interval := greatest(authctx._setting('authctx.lockout_max_delay'), v_base);
  v_failures  integer;
  v_last      timestamptz;
BEGIN
  -- (plain operators: with search_path pinned they are pg_catalog's)
  WITH w AS (
    SELECT a.occurred_at, a.event FROM authctx.audit_log a
     WHERE a.occurred_at > v_now - 2 * v_max
       AND a.user_id = p_user_id
       AND (a.event = 'totp_verified'
            OR (a.event = 'totp_failed' AND a.detail ->> 'reason' = 'bad_code')))
  SELECT count(*), max(w.occurred_at) INTO v_failures, v_last
    FROM w
   WHERE w.event = 'totp_failed'
     AND w.occurred_at > coalesce((SELECT max(x.occurred_at) FROM w x
                                    WHERE x.event = 'totp_verified'), '-infinity');
  RETURN v_failures >= v_threshold
     AND v_now < v_last + least(v_base * power(2::double precision, least(v_failures - v_threshold, 30)),
                                v_max);
END
$$;
COMMENT ON FUNCTION authctx._totp_locked(uuid) IS
  'internal: whether a user''s TOTP codes are locked by their own failure streak (totp_failed since the last totp_verified), which a password login does not reset';

CREATE FUNCTION authctx.verify_totp(code text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_ctx    authctx.context := authctx.current();
  v_factor authctx.totp_factors;
  v_locked timestamptz;
  v_code   text := pg_catalog.btrim(verify_totp.code);
  v_step   bigint;
  v_method text;
BEGIN
  IF v_ctx.user_id IS NULL THEN
    RAISE EXCEPTION 'no authentication context in this transaction'
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Call auth_begin(session_token) earlier in the same transaction.';
  END IF;
  IF v_ctx.auth_method IS DISTINCT FROM 'session' OR v_ctx.session_id IS NULL THEN
    RAISE EXCEPTION 'only a session can be stepped up with a second factor'
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'The context of this transaction was not made from a session token.';
  END IF;
  IF v_code IS NULL THEN
    RAISE EXCEPTION 'code must not be null' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF pg_catalog.current_setting('transaction_read_only') OPERATOR(pg_catalog.=) 'on' THEN
    RAISE EXCEPTION 'cannot verify a second factor in a read-only transaction'
      USING ERRCODE = 'read_only_sql_transaction';
  END IF;
  SELECT * INTO v_factor FROM authctx.totp_factors f
   WHERE f.user_id OPERATOR(pg_catalog.=) v_ctx.user_id AND f.secret IS NOT NULL
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no TOTP factor is enabled for this user'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Enrol one with authctx.enroll_totp and authctx.confirm_totp.';
  END IF;
  SELECT t.locked_until INTO v_locked FROM authctx.login_throttle t
   WHERE t.user_id OPERATOR(pg_catalog.=) v_ctx.user_id;
  IF v_locked OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
     OR authctx._totp_locked(v_ctx.user_id) THEN
    PERFORM authctx._totp_failed(v_ctx, 'locked');
    RETURN false;
  END IF;

  IF v_code OPERATOR(pg_catalog.~) '^[0-9]{6}$' THEN
    v_step := authctx._totp_match(v_ctx.user_id, v_factor.secret, v_code,
                                  coalesce(v_factor.last_step, -1), pg_catalog.clock_timestamp());
    IF v_step IS NOT NULL THEN
      UPDATE authctx.totp_factors f SET last_step = v_step
       WHERE f.user_id OPERATOR(pg_catalog.=) v_ctx.user_id;
      v_method := 'totp';
    END IF;
  ELSE
    UPDATE authctx.totp_recovery_codes r SET spent_at = pg_catalog.clock_timestamp()
     WHERE r.user_id OPERATOR(pg_catalog.=) v_ctx.user_id AND r.spent_at IS NULL
       AND authctx._verifier_equal(r.verifier, authctx._recovery_verifier(v_ctx.user_id, v_code));
    IF FOUND THEN
      v_method := 'recovery_code';
    END IF;
  END IF;

  IF v_method IS NULL THEN
    PERFORM authctx._totp_failed(v_ctx, 'bad_code');
    RETURN false;
  END IF;
  PERFORM authctx._step_up_session(v_ctx.session_id, 'otp');
  PERFORM authctx._audit('totp_verified', v_ctx.user_id, v_ctx.tenant_id, v_ctx.session_id,
                         pg_catalog.jsonb_build_object('method', v_method));
  RETURN true;
END
$$;
COMMENT ON FUNCTION authctx.verify_totp(text) IS
  'inside a session''s auth_begin context: check a TOTP code (each step once) or spend a recovery code; true steps the session up (''otp'' in amr); false is counted toward the lockout; 28000 without context, 42501 for a non-session context';

CREATE FUNCTION authctx.disable_totp(user_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
BEGIN
  PERFORM authctx._require_user(disable_totp.user_id);
  DELETE FROM authctx.totp_recovery_codes r WHERE r.user_id OPERATOR(pg_catalog.=) disable_totp.user_id;
  DELETE FROM authctx.totp_factors f WHERE f.user_id OPERATOR(pg_catalog.=) disable_totp.user_id;
  IF FOUND THEN
    PERFORM authctx._audit('totp_disabled', disable_totp.user_id, NULL, NULL, '{}'::jsonb);
  END IF;
END
$$;
COMMENT ON FUNCTION authctx.disable_totp(uuid) IS
  'remove a user''s TOTP factor (active or pending) and recovery codes, audited';

CREATE TYPE authctx.user_info AS (
  user_id            uuid,
  email              text,
  display_name       text,
  email_verified_at  timestamptz,
  disabled           boolean,
  totp_enabled       boolean,
  created_at         timestamptz
);
COMMENT ON TYPE authctx.user_info IS 'what authctx.user_info returns';

CREATE FUNCTION authctx.user_info(user_id uuid) RETURNS authctx.user_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_info authctx.user_info;
BEGIN
  SELECT u.id, u.email, u.display_name, u.email_verified_at, u.disabled_at IS NOT NULL,
         EXISTS (SELECT 1 FROM authctx.totp_factors f
                  WHERE f.user_id OPERATOR(pg_catalog.=) u.id AND f.secret IS NOT NULL),
         u.created_at
    INTO v_info
    FROM authctx.users u WHERE u.id OPERATOR(pg_catalog.=) user_info.user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'user % does not exist', user_info.user_id USING ERRCODE = 'undefined_object';
  END IF;
  RETURN v_info;
END
$$;
COMMENT ON FUNCTION authctx.user_info(uuid) IS
  'a user''s profile and account state: email, display name, when the email was verified, disabled, TOTP enabled, created (42704 for an unknown user)';

-- privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION
  authctx._totp_enroll(uuid, text), authctx._totp_match(uuid, bytea, text, bigint, timestamptz),
  authctx._totp_code(bytea, bigint, integer), authctx._recovery_codes(integer),
  authctx._recovery_verifier(uuid, text), authctx._check_ttl(interval),
  authctx._lock_one_time_scope(bytea), authctx._spend_one_time_token(text, text),
  authctx._one_time_user(authctx.one_time_tokens),
  authctx._issue_one_time_token(text, uuid, uuid, bytea, text, interval),
  authctx._one_time_login_failed(uuid, text), authctx._totp_failed(authctx.context, text),
  authctx._step_up_session(uuid, text), authctx._totp_locked(uuid),
  authctx.create_one_time_token(uuid, text, interval), authctx.verify_email(text),
  authctx.reset_password(text, text), authctx.login_with_token(text, text),
  authctx.invite_member(text, text, text, interval), authctx.accept_invite(text, uuid),
  authctx.enroll_totp(uuid), authctx.confirm_totp(uuid, text), authctx.verify_totp(text),
  authctx.disable_totp(uuid), authctx.user_info(uuid)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
  authctx.verify_email(text), authctx.reset_password(text, text),
  authctx.login_with_token(text, text), authctx.verify_totp(text)
TO authctx_app;

GRANT EXECUTE ON FUNCTION
  authctx.create_one_time_token(uuid, text, interval),
  authctx.invite_member(text, text, text, interval), authctx.accept_invite(text, uuid),
  authctx.enroll_totp(uuid), authctx.confirm_totp(uuid, text),
  authctx.disable_totp(uuid), authctx.user_info(uuid)
TO authctx_manager;

-- lead: cleanup() as the merge of refactor (_session_live) and flows (one-time tokens) defines it

CREATE OR REPLACE FUNCTION authctx.cleanup() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := clock_timestamp();
  v_idle   interval := authctx._setting('authctx.session_idle_timeout');
  -- rows stay a little past their end: last-seen times arrive late, and
  -- revocations leave rows dead for more than half of it alone
  v_margin interval := authctx._cleanup_margin();
  v_total  bigint := 0;
BEGIN
  -- a session row stays while its login family can still be refreshed
  v_total := v_total + authctx._delete_in_batches(
    'authctx.sessions',
    $c$(t.revoked_at < $1 - $3
        OR NOT authctx._session_live(t.expires_at, t.last_seen_at, $1 - $3, $2))
       AND NOT EXISTS (SELECT 1 FROM authctx.refresh_tokens rt
                        WHERE rt.family_id = t.family_id AND rt.revoked_at IS NULL
                          AND rt.spent_at IS NULL AND rt.expires_at > $1)$c$,
    v_now, v_idle, v_margin, NULL);
  -- spent tokens are kept until they expire: they are what detects reuse
  v_total := v_total + authctx._delete_in_batches(
    'authctx.refresh_tokens',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.api_keys',
    $c$t.revoked_at < $1 - $3 OR t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  v_total := v_total + authctx._delete_in_batches(
    'authctx.webauthn_challenges',
    $c$t.expires_at < $1 - $3$c$,
    v_now, v_idle, v_margin, NULL);
  -- one-time tokens (68_flows.sql): dead once expired, spent or revoked
  v_total := v_total + authctx._delete_in_batches(
    'authctx.one_time_tokens',
    $c$t.expires_at < $1 OR t.spent_at IS NOT NULL OR t.revoked_at IS NOT NULL$c$,
    v_now, v_idle, v_margin, NULL);
  RETURN v_total;
END
$$;
COMMENT ON FUNCTION authctx.cleanup() IS
  'delete revoked and expired sessions (not while their login family can refresh), refresh tokens, API keys, expired WebAuthn challenges and dead one-time tokens in small batches; returns rows removed';

-- sliding: sliding last-seen (issue 14, item 1): a session's last-seen time
-- is recorded every tenth of the idle timeout, and the idle rule allows for
-- that lag (a session is idle when its recorded time is 1.1 x the timeout
-- old).
CREATE OR REPLACE FUNCTION authctx._session_live(p_expires_at timestamptz, p_last_seen_at timestamptz,
                                      p_at timestamptz, p_idle interval)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT p_expires_at OPERATOR(pg_catalog.>) p_at
     AND (p_idle OPERATOR(pg_catalog.=) interval '0'
          OR (p_last_seen_at OPERATOR(pg_catalog.+) p_idle
              OPERATOR(pg_catalog.+) (p_idle OPERATOR(pg_catalog./) 10::double precision))
             OPERATOR(pg_catalog.>) p_at);
$$;
COMMENT ON FUNCTION authctx._session_live(timestamptz, timestamptz, timestamptz, interval) IS
  'internal: whether a session (expiry, last seen) is neither expired nor idle at a time, for an idle timeout (recorded last-seen at least a tenth of it older than the last use)';

-- audit: one audit module (issue 12 item 4).  authctx._audit (20_audit.sql)
-- holds the one statement that inserts into audit_log; it takes the
-- caller's db_role and the time of the event as optional arguments, so the
-- worker's records write through it (new signature: the old one is
-- dropped).  authctx._audit_record is the worker's kind audit (admin_bypass
-- from AuditWriteDurable).  _autonomous_apply only dispatches: the
-- revocation of a reused refresh token's family is session's
-- _refresh_reuse, the last-seen write session's _note_seen, the lockout
-- back-off identity's _login_failure, clone marking webauthn's
-- _webauthn_failure, each auditing through _audit.

DROP FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb);
CREATE FUNCTION authctx._audit(event text, user_id uuid, tenant_id uuid,
                               session_id uuid, detail jsonb DEFAULT '{}',
                               db_role name DEFAULT NULL,
                               occurred_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  INSERT INTO authctx.audit_log (occurred_at, event, user_id, tenant_id, session_id, db_role, detail)
  VALUES (COALESCE(_audit.occurred_at, pg_catalog.clock_timestamp()),
          _audit.event, _audit.user_id, _audit.tenant_id, _audit.session_id,
          COALESCE(_audit.db_role, pg_catalog.session_user()),
          COALESCE(_audit.detail, '{}'::jsonb));
END
$$;
COMMENT ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb, name, timestamptz) IS 'internal: append an audit event';
REVOKE ALL ON FUNCTION authctx._audit(text, uuid, uuid, uuid, jsonb, name, timestamptz) FROM PUBLIC;

CREATE FUNCTION authctx._audit_record(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF COALESCE(p_record ->> 'event', '') = '' THEN
    RAISE EXCEPTION 'audit record without an event' USING ERRCODE = '22023';
  END IF;
  PERFORM authctx._audit(p_record ->> 'event',
                         (p_record ->> 'user_id')::uuid,
                         (p_record ->> 'tenant_id')::uuid,
                         (p_record ->> 'session_id')::uuid,
                         COALESCE(p_record -> 'detail', '{}'::jsonb),
                         (p_record ->> 'db_role')::name);
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._audit_record(jsonb) IS 'internal: append an audit event handed over as a record (the worker''s kind audit)';
REVOKE ALL ON FUNCTION authctx._audit_record(jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx._login_failure(p_user_id uuid, p_reason text, p_count boolean,
                                       p_record jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now       timestamptz := clock_timestamp();
  v_threshold integer;
  v_base      double precision;
  v_max       double precision;
  v_failures  integer;
  v_locked    timestamptz;
BEGIN
  IF p_user_id IS NOT NULL AND coalesce(p_count, false) THEN
    v_threshold := greatest((p_record ->> 'threshold')::integer, 1);
    v_base := greatest((p_record ->> 'base_delay')::double precision, 1);
    v_max := greatest((p_record ->> 'max_delay')::double precision, v_base);
    -- The streak is forgotten after a quiet period of twice the longest
    -- lockout.  INSERT ... SELECT: a user deleted (or not yet committed)
    -- meanwhile simply gets no row.
    INSERT INTO authctx.login_throttle AS t (user_id, failures, last_failure_at)
    SELECT u.id, 1, v_now FROM authctx.users u WHERE u.id = p_user_id
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
       WHERE t.user_id = p_user_id;
    END IF;
  END IF;
  PERFORM authctx._audit('login_failed', p_user_id, NULL, NULL,
                         jsonb_strip_nulls(jsonb_build_object(
                           'reason', p_reason,
                           'method', p_record ->> 'method',
                           'failures', v_failures,
                           'locked_until', v_locked)),
                         (p_record ->> 'db_role')::name, v_now);
  RETURN jsonb_strip_nulls(jsonb_build_object('failures', v_failures, 'locked_until', v_locked));
END
$$;
COMMENT ON FUNCTION authctx._login_failure(uuid, text, boolean, jsonb) IS
  'internal: count a failed login toward the lockout (when it counts) and audit login_failed; returns failures and locked_until';

CREATE FUNCTION authctx._refresh_reuse(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now      timestamptz := clock_timestamp();
  v_family   uuid := (p_record ->> 'family_id')::uuid;
  v_sessions integer;
BEGIN
  IF v_family IS NULL THEN
    RAISE EXCEPTION 'refresh_reuse record without a family' USING ERRCODE = '22023';
  END IF;
  SELECT f.sessions INTO v_sessions FROM authctx._revoke_family(v_family, v_now) f;
  PERFORM authctx._audit('refresh_reuse',
                         (p_record ->> 'user_id')::uuid,
                         (p_record ->> 'tenant_id')::uuid,
                         (p_record ->> 'session_id')::uuid,
                         jsonb_build_object(
                           'family_id', v_family,
                           'refresh_token_id', p_record ->> 'token_id',
                           'sessions_revoked', v_sessions),
                         (p_record ->> 'db_role')::name, v_now);
  RETURN jsonb_build_object('sessions_revoked', v_sessions);
END
$$;
COMMENT ON FUNCTION authctx._refresh_reuse(jsonb) IS
  'internal: revoke the login family of a reused refresh token and audit refresh_reuse (in the worker''s transaction); returns sessions_revoked';
REVOKE ALL ON FUNCTION authctx._refresh_reuse(jsonb) FROM PUBLIC;

CREATE FUNCTION authctx._note_seen(p_record jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_kind text;
  v_ids  uuid[];
  v_ats  timestamptz[];
BEGIN
  FOREACH v_kind IN ARRAY ARRAY['s', 'k'] LOOP
    SELECT coalesce(array_agg(n.id ORDER BY n.id), '{}'),
           coalesce(array_agg(n.at ORDER BY n.id), '{}')
      INTO v_ids, v_ats
      FROM (SELECT (e ->> 'id')::uuid AS id,
                   max(to_timestamp((e ->> 't')::numeric / 1000000)) AS at
              FROM jsonb_array_elements(p_record -> 'entries') e
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
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._note_seen(jsonb) IS
  'internal: move sessions'' last_seen_at and API keys'' last_used_at forward from a batch of notes, skipping locked rows (in the worker''s transaction)';
REVOKE ALL ON FUNCTION authctx._note_seen(jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION authctx._webauthn_failure(p_failure jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now  timestamptz := pg_catalog.clock_timestamp();
  v_role name := coalesce(p_failure ->> 'db_role', pg_catalog.session_user()::text);
BEGIN
  IF p_failure ->> 'challenge' IS NOT NULL THEN
    DELETE FROM authctx.webauthn_challenges c
     WHERE c.challenge = pg_catalog.decode(p_failure ->> 'challenge', 'hex');
  END IF;
  IF coalesce((p_failure ->> 'clone')::boolean, false) THEN
    UPDATE authctx.webauthn_credentials c
       SET clone_suspected_at = coalesce(c.clone_suspected_at, v_now)
     WHERE c.credential_id = pg_catalog.decode(p_failure ->> 'credential_id', 'hex');
    PERFORM authctx._audit('webauthn_clone_suspected', (p_failure ->> 'user_id')::uuid, NULL, NULL,
              pg_catalog.jsonb_build_object('credential_id', p_failure ->> 'credential_id',
                                            'stored_count', (p_failure ->> 'stored_count')::bigint,
                                            'presented_count', (p_failure ->> 'presented_count')::bigint),
              v_role, v_now);
  END IF;
  IF coalesce((p_failure ->> 'login')::boolean, false) THEN
    RETURN authctx._login_failure((p_failure ->> 'user_id')::uuid, p_failure ->> 'reason',
                                  false, p_failure);
  END IF;
  PERFORM authctx._audit('webauthn_failed', (p_failure ->> 'user_id')::uuid, NULL, NULL,
            pg_catalog.jsonb_build_object('reason', p_failure ->> 'reason',
                                          'credential_id', p_failure ->> 'credential_id'),
            v_role, v_now);
  RETURN '{}'::jsonb;
END
$$;
COMMENT ON FUNCTION authctx._webauthn_failure(jsonb) IS
  'internal: spend the challenge of a failed WebAuthn attempt, mark a suspected clone, audit the failure (in the worker''s transaction)';

CREATE OR REPLACE FUNCTION authctx._autonomous_apply(kind text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- a dispatcher only: every rule lives with the module that owns it
  CASE kind
    WHEN 'audit' THEN
      RETURN authctx._audit_record(payload);
    WHEN 'login_attempt' THEN
      RETURN authctx._login_attempt(payload);
    WHEN 'webauthn_attempt' THEN
      RETURN authctx._webauthn_attempt(payload);
    WHEN 'login_failed' THEN
      RETURN authctx._login_failure((payload ->> 'user_id')::uuid, payload ->> 'reason',
                                    (payload ->> 'count')::boolean, payload);
    WHEN 'webauthn_failed' THEN
      RETURN authctx._webauthn_failure(payload);
    WHEN 'refresh_reuse' THEN
      RETURN authctx._refresh_reuse(payload);
    WHEN 'seen' THEN
      RETURN authctx._note_seen(payload);
    ELSE
      RAISE EXCEPTION 'unknown autonomous record kind' USING ERRCODE = '22023';
  END CASE;
END
$$;
COMMENT ON FUNCTION authctx._autonomous_apply(text, jsonb) IS
  'internal: what the autonomous worker runs in its own transaction (audit, login_attempt, webauthn_attempt, login_failed, webauthn_failed, refresh_reuse, seen); returns what the record did';

-- lead: one keyed advisory lock (authctx._lock_keyed) under the account lock and the one-time scope lock

CREATE OR REPLACE FUNCTION authctx._lock_keyed(label bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lock bigint;
BEGIN
  SELECT authctx._keyed_hash64(_lock_keyed.label, s.secret)
    INTO v_lock
    FROM authctx.database_secret s;
  IF v_lock IS NULL THEN
    RAISE EXCEPTION 'authctx.database_secret is empty'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Reinstall the extension, or insert a random 32-byte secret.';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(v_lock);
END
$$;
COMMENT ON FUNCTION authctx._lock_keyed(bytea) IS
  'internal: a transaction advisory lock on the keyed hash (authctx.database_secret) of a label';

CREATE OR REPLACE FUNCTION authctx._lock_account(email text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._lock_keyed('authctx account '::bytea
                                OPERATOR(pg_catalog.||)
                                coalesce(authctx._email_key(_lock_account.email), ''::bytea));
END
$$;
COMMENT ON FUNCTION authctx._lock_account(text) IS
  'internal: the per-account lock of password attempts (a keyed hash of the email''s key), for known and unknown emails alike';

CREATE OR REPLACE FUNCTION authctx._lock_one_time_scope(p_scope bytea) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM authctx._lock_keyed('authctx one-time '::bytea OPERATOR(pg_catalog.||) p_scope);
END
$$;
COMMENT ON FUNCTION authctx._lock_one_time_scope(bytea) IS
  'internal: serialise the making of one-time tokens of one scope (user and purpose, or tenant and email)';
REVOKE ALL ON FUNCTION authctx._lock_keyed(bytea) FROM PUBLIC;
