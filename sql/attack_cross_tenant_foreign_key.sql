-- Attack: reach another tenant's rows through a foreign key.  PostgreSQL
-- checks foreign keys as the referenced table's owner without row level
-- security, so with orders.customer_id REFERENCES customers (id) a tenant
-- that sees none of another tenant's customers can still tell which ids
-- exist (the insert succeeds or fails), and pin one with an order of its
-- own (the owner can no longer delete it; with ON DELETE CASCADE, its
-- delete would remove the other tenant's order).  isolation_report said
-- nothing was wrong; it now names foreign keys to an isolated table that
-- do not pair the tenant columns.  The fix is in the schema:
-- FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\set VERBOSITY terse

CREATE ROLE regress_fk_owner NOLOGIN;
CREATE ROLE regress_fk_app NOLOGIN IN ROLE authctx_app;
CREATE SCHEMA fk AUTHORIZATION regress_fk_owner;
GRANT USAGE ON SCHEMA fk TO regress_fk_app;
SET ROLE regress_fk_owner;
CREATE TABLE fk.customers (id int PRIMARY KEY, tenant_id uuid, name text,
                           UNIQUE (tenant_id, id));
CREATE TABLE fk.orders (id int PRIMARY KEY, tenant_id uuid,
                        customer_id int REFERENCES fk.customers (id), note text);
GRANT SELECT, INSERT, UPDATE, DELETE ON fk.customers, fk.orders TO regress_fk_app;
RESET ROLE;
SELECT authctx.enable_tenant_isolation('fk.customers');
SELECT authctx.enable_tenant_isolation('fk.orders');

SELECT authctx.create_tenant('fk-a') AS ta \gset
SELECT authctx.create_tenant('fk-b') AS tb \gset
SELECT authctx.create_user('fk-a@example.com') AS ua \gset
SELECT authctx.create_user('fk-b@example.com') AS ub \gset
SELECT authctx.add_member('fk-a', :'ua');
SELECT authctx.add_member('fk-b', :'ub');
SELECT authctx.create_session(:'ua')::text AS toka \gset
SELECT authctx.create_session(:'ub')::text AS tokb \gset

SET ROLE regress_fk_app;
BEGIN;
SELECT tenant_id = :'ta' AS tenant_a FROM auth_begin(:'toka');
INSERT INTO fk.customers (id, name) VALUES (7, 'a customer');
COMMIT;
-- tenant B sees none of A's customers, yet probes and pins one
BEGIN;
SELECT tenant_id = :'tb' AS tenant_b FROM auth_begin(:'tokb');
SELECT count(*) AS customers_b_sees FROM fk.customers;
SAVEPOINT s;
INSERT INTO fk.orders (id, customer_id) VALUES (1, 8);
ROLLBACK TO s;
INSERT INTO fk.orders (id, customer_id, note) VALUES (1, 7, 'pinned');
COMMIT;
BEGIN;
SELECT tenant_id = :'ta' AS tenant_a FROM auth_begin(:'toka');
DELETE FROM fk.customers WHERE id = 7;
ROLLBACK;
RESET ROLE;

-- the lint names the key; with the tenant columns paired it is quiet
SELECT table_name, problem FROM authctx.isolation_report()
 WHERE table_name IN ('fk.customers'::regclass, 'fk.orders'::regclass) ORDER BY 1;
DELETE FROM fk.orders;
ALTER TABLE fk.orders DROP CONSTRAINT orders_customer_id_fkey,
  ADD FOREIGN KEY (tenant_id, customer_id) REFERENCES fk.customers (tenant_id, id);
SELECT table_name, problem FROM authctx.isolation_report()
 WHERE table_name IN ('fk.customers'::regclass, 'fk.orders'::regclass) ORDER BY 1;
SET ROLE regress_fk_app;
BEGIN;
SELECT tenant_id = :'tb' AS tenant_b FROM auth_begin(:'tokb');
-- A's customer 7 now answers as a missing one does
SAVEPOINT s;
INSERT INTO fk.orders (id, customer_id) VALUES (2, 7);
ROLLBACK TO s;
SAVEPOINT s;
INSERT INTO fk.orders (id, customer_id) VALUES (2, 8);
ROLLBACK TO s;
COMMIT;
RESET ROLE;

DROP SCHEMA fk CASCADE;
DROP ROLE regress_fk_app;
DROP ROLE regress_fk_owner;
