-- authctx install script, built from src/sql/*.sql in name order.
-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION authctx" to load this file. \quit

-- ---------------------------------------------------------------------------
-- 00 setup: the schema must be ours, and the roles exist.
--
-- Operators, the one rule for every file here: write OPERATOR(pg_catalog.=)
-- (and <, +, ...) wherever a user could shadow an operator, that is
-- wherever the search_path is not pinned to pg_catalog first: this script's
-- own top-level statements, plain SQL functions left without a SET clause
-- so that they inline (authctx._revoked_by_user, authctx._session_live),
-- trigger WHEN clauses, and the policy and default expressions the
-- isolation helpers write onto application tables.  Inside a function
-- declared SET search_path = pg_catalog, pg_temp a plain = already is
-- pg_catalog's, and may be written plainly.
-- ---------------------------------------------------------------------------

-- A hostile user who pre-created schema authctx would own every object we
-- put in it.  Refuse to install into a schema not owned by a superuser.
DO $setup$
BEGIN
  IF EXISTS (SELECT 1
               FROM pg_catalog.pg_namespace n
               JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
              WHERE n.nspname OPERATOR(pg_catalog.=) 'authctx'
                AND NOT r.rolsuper) THEN
    RAISE EXCEPTION 'schema "authctx" exists and is not owned by a superuser'
      USING ERRCODE = '42501',
            HINT = 'Drop or rename that schema, then run CREATE EXTENSION authctx again.';
  END IF;
END
$setup$;

-- Roles are cluster-wide: created if missing, reused if present.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_app') THEN
    CREATE ROLE authctx_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_manager') THEN
    CREATE ROLE authctx_manager NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'authctx_admin') THEN
    CREATE ROLE authctx_admin NOLOGIN;
  END IF;
END
$roles$;

-- manager may do what app may; admin what manager may.
GRANT authctx_app TO authctx_manager;
GRANT authctx_manager TO authctx_admin;

REVOKE ALL ON SCHEMA authctx FROM PUBLIC;
GRANT USAGE ON SCHEMA authctx TO PUBLIC;
