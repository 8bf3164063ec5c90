-- examples/notes-app/seed.sql: two tenants and three users for the demo
-- and the tests, run with psql by a superuser after schema.sql.
--
--   acme    alice@acme.test (owner), carol@both.test (viewer)
--   globex  bob@globex.test (member), carol@both.test (member)
--
-- Every password is 'correct horse battery staple'.  carol belongs to two
-- tenants, so her requests name one (in the Host or X-Tenant); so may her
-- login, else her session starts without a tenant.
SET client_min_messages = warning;
SELECT authctx.create_tenant('acme', 'Acme Inc.') AS acme,
       authctx.create_tenant('globex', 'Globex Corp.') AS globex \gset
SELECT authctx.create_user('alice@acme.test', 'Alice') AS alice,
       authctx.create_user('bob@globex.test', 'Bob') AS bob,
       authctx.create_user('carol@both.test', 'Carol') AS carol \gset
SELECT authctx.add_member('acme', :'alice', 'owner'),
       authctx.add_member('globex', :'bob', 'member'),
       authctx.add_member('acme', :'carol', 'viewer'),
       authctx.add_member('globex', :'carol', 'member');
SELECT authctx.set_password(u, 'correct horse battery staple')
  FROM unnest(ARRAY[:'alice', :'bob', :'carol']::uuid[]) AS u;
INSERT INTO notes.accounts (user_id, email)
VALUES (:'alice', 'alice@acme.test'), (:'bob', 'bob@globex.test'), (:'carol', 'carol@both.test');
