-- ---------------------------------------------------------------------------
-- 95 backup: what pg_dump keeps, and a guard for restores.
--
-- pg_dump writes the rows of an extension's table only when the table is
-- registered with pg_extension_config_dump(); a sequence needs its own
-- registration (its table's does not cover it).  0.1.0 registered nothing,
-- so a pg_dump / pg_restore silently lost every account.  Now every table
-- that holds data is registered, whole (condition ''), and the identity
-- sequence of audit_log, so that new audit rows do not collide with
-- restored ones.
--
-- Not dumped, on purpose:
--   authctx.webauthn_challenges  issued, unspent challenges, single use and
--       valid for minutes (authctx.webauthn_challenge_ttl).  A restored
--       challenge would be unspent again, even one spent after the backup,
--       so an assertion captured in that window could be replayed against
--       the restored database; a client simply asks for a new one.
-- test/t/060_backup.pl fails on any table or sequence of schema authctx
-- that is neither registered nor on its "not dumped" list: register a new
-- table when you add it (here, until the calls move next to their tables).
--
-- The data version (authctx._data_version).  pg_dump writes
-- CREATE EXTENSION IF NOT EXISTS authctx without a version: restored where
-- a newer authctx is the default, the dump's rows would be loaded into the
-- newer tables as they are, skipping the migration of the update scripts.
-- So the dump carries the version its rows are shaped for, in this
-- one-row table (kept by the install and update scripts: every update
-- script sets it), and a trigger refuses, with 55000 and a hint, a restored
-- row that names another version than the installed one.  Its name sorts
-- first among the extension's tables, so pg_dump restores it before any
-- other authctx row.  A restored row equal to the installed version is
-- dropped silently: the install script has written it already.
-- ---------------------------------------------------------------------------

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
