-- Attack: a table's owner becomes superuser through the saved default.
-- enable_tenant_isolation keeps the tenant column's old default as the
-- text pg_get_expr prints, and disable_tenant_isolation runs it in
-- ALTER TABLE ... SET DEFAULT (%s).  pg_get_expr writes string literals
-- for the standard_conforming_strings in force: a literal holding a
-- backslash, printed with it on, ends early when the text is parsed with
-- it off, and the rest of the owner's literal runs as SQL (several
-- statements: plpgsql's EXECUTE takes them) with the rights of whoever
-- called disable.  A database owner can put standard_conforming_strings =
-- off on every session of the database (ALTER DATABASE ... SET); here the
-- DBA's session has it.  Both helpers pin the setting now, so the text is
-- printed and parsed the same way and only ever restores the default.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

CREATE ROLE regress_de_owner NOLOGIN IN ROLE authctx_manager;
CREATE SCHEMA de AUTHORIZATION regress_de_owner;

SET ROLE regress_de_owner;
-- printed with standard_conforming_strings on, the first literal is '\';
-- parsed with it off, \' is a quote inside the literal, the second
-- literal's text is SQL, and -- comments out the rest of the line
CREATE TABLE de.t (id int, tenant_id uuid
  DEFAULT (NULLIF(('\'::text || '), NULL))::uuid); ALTER ROLE regress_de_owner SUPERUSER; --'), 'z'))::uuid);
SELECT pg_get_expr(d.adbin, d.adrelid) AS old_default
  FROM pg_attrdef d WHERE d.adrelid = 'de.t'::regclass \gset
SELECT authctx.enable_tenant_isolation('de.t');
RESET ROLE;

-- the DBA, with standard_conforming_strings off, undoes the isolation
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT authctx.disable_tenant_isolation('de.t');
RESET escape_string_warning;
RESET standard_conforming_strings;

SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'regress_de_owner';
-- and the default is the owner's own again, unchanged
SELECT pg_get_expr(d.adbin, d.adrelid) = :'old_default' AS default_restored
  FROM pg_attrdef d WHERE d.adrelid = 'de.t'::regclass;

-- the other way round: enabled with standard_conforming_strings off,
-- disabled with it on
ALTER ROLE regress_de_owner NOSUPERUSER;
SET ROLE regress_de_owner;
ALTER TABLE de.t ALTER COLUMN tenant_id SET DEFAULT (NULLIF(('\'::text || '), NULL))::uuid); ALTER ROLE regress_de_owner SUPERUSER; --'), 'z'))::uuid;
SET standard_conforming_strings = off;
SELECT authctx.enable_tenant_isolation('de.t');
RESET standard_conforming_strings;
RESET ROLE;
SELECT authctx.disable_tenant_isolation('de.t');
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'regress_de_owner';
SELECT pg_get_expr(d.adbin, d.adrelid) = :'old_default' AS default_restored
  FROM pg_attrdef d WHERE d.adrelid = 'de.t'::regclass;

-- a default with a backslash in a literal survives the round trip whatever
-- the setting (the text is printed and parsed with it on)
SET ROLE regress_de_owner;
ALTER TABLE de.t ALTER COLUMN tenant_id
  SET DEFAULT (NULLIF(('a\b'::text), 'x'::text))::uuid;
SELECT pg_get_expr(d.adbin, d.adrelid) AS old_default
  FROM pg_attrdef d WHERE d.adrelid = 'de.t'::regclass \gset
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT authctx.enable_tenant_isolation('de.t');
SELECT authctx.disable_tenant_isolation('de.t');
RESET escape_string_warning;
RESET standard_conforming_strings;
RESET ROLE;
SELECT pg_get_expr(d.adbin, d.adrelid) = :'old_default' AS default_restored
  FROM pg_attrdef d WHERE d.adrelid = 'de.t'::regclass;

DROP SCHEMA de CASCADE;
DROP ROLE regress_de_owner;
