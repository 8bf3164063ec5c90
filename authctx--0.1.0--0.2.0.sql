-- authctx 0.1.0 -> 0.2.0
--
-- Every change to the schema since 0.1.0, in the order the sections were
-- added.  The result must equal a fresh install of 0.2.0 (test/t/050_upgrade.pl
-- compares the two), and no row may be lost.
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION authctx UPDATE TO '0.2.0'" to load this file. \quit

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
