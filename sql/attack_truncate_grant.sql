-- Attack: empty every tenant's rows from one tenant's context.  Row level
-- security limits SELECT, INSERT, UPDATE and DELETE, not TRUNCATE; nor
-- does it limit what a trigger sees (one created by a role with TRIGGER
-- sees every tenant's writes) or the foreign key checks a REFERENCES grant
-- allows (they probe every tenant's keys).  GRANT ALL gives the
-- application role all three, and isolation_report said nothing was wrong.
-- It now names those grants; the right grant is SELECT, INSERT, UPDATE,
-- DELETE.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

CREATE ROLE regress_tg_owner NOLOGIN;
CREATE ROLE regress_tg_app NOLOGIN IN ROLE authctx_app;
CREATE SCHEMA tg AUTHORIZATION regress_tg_owner;
GRANT USAGE ON SCHEMA tg TO regress_tg_app;
CREATE TABLE tg.inv (id int, tenant_id uuid, body text);
ALTER TABLE tg.inv OWNER TO regress_tg_owner;
SELECT authctx.enable_tenant_isolation('tg.inv');
GRANT ALL ON tg.inv TO regress_tg_app;

SELECT authctx.create_tenant('tg-a') AS ta \gset
SELECT authctx.create_tenant('tg-b') AS tb \gset
SELECT authctx.create_user('tg-a@example.com') AS ua \gset
SELECT authctx.create_user('tg-b@example.com') AS ub \gset
SELECT authctx.add_member('tg-a', :'ua');
SELECT authctx.add_member('tg-b', :'ub');
SELECT authctx.create_session(:'ua')::text AS toka \gset
SELECT authctx.create_session(:'ub')::text AS tokb \gset

SET ROLE regress_tg_app;
BEGIN;
SELECT tenant_id = :'tb' AS tenant_b FROM auth_begin(:'tokb');
INSERT INTO tg.inv (id, body) VALUES (1, 'b');
COMMIT;
-- tenant A's context, and a grant too many
BEGIN;
SELECT tenant_id = :'ta' AS tenant_a FROM auth_begin(:'toka');
SELECT count(*) AS rows_a_sees FROM tg.inv;
TRUNCATE tg.inv;
COMMIT;
BEGIN;
SELECT tenant_id = :'tb' AS tenant_b FROM auth_begin(:'tokb');
SELECT count(*) AS rows_b_has_left FROM tg.inv;
COMMIT;
RESET ROLE;

-- the lint names what row level security does not limit
SELECT table_name, problem FROM authctx.isolation_report() WHERE table_name = 'tg.inv'::regclass;
REVOKE TRUNCATE, TRIGGER ON tg.inv FROM regress_tg_app;
GRANT TRUNCATE ON tg.inv TO PUBLIC;
SELECT table_name, problem FROM authctx.isolation_report() WHERE table_name = 'tg.inv'::regclass;
REVOKE ALL ON tg.inv FROM PUBLIC, regress_tg_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tg.inv TO regress_tg_app;
SELECT table_name, problem FROM authctx.isolation_report() WHERE table_name = 'tg.inv'::regclass;

DROP SCHEMA tg CASCADE;
DROP ROLE regress_tg_app;
DROP ROLE regress_tg_owner;
