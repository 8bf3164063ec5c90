-- identity: tenants, users, memberships, passwords, OAuth links.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;
RESET client_min_messages;
\pset null '(null)'

-- try(stmt): run a statement, show 'ok' or its SQLSTATE, message and detail
-- (uuids masked).  Appends LEAK if message, detail, hint or context (less
-- the statement itself) shows the test password or a hash.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text; det text; hint text; ctx text;
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
                          ctx = PG_EXCEPTION_CONTEXT;
  RETURN regexp_replace(st || ': ' || msg || coalesce(' (' || nullif(det, '') || ')', ''),
                        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g')
         || CASE WHEN concat_ws(' ', msg, det, hint, replace(ctx, stmt, '')) ~ '(Sup3r|argon2)'
                 THEN ' LEAK' ELSE '' END;
END
$$;

-- the leak detector works
SELECT pg_temp.try($q$DO $x$ BEGIN RAISE EXCEPTION 'oops: %', 'Sup3r-Secret-pw'; END $x$$q$) AS detector;

-- settings: defaults, and the values this test runs with (set here, so
-- that the test passes whatever the server's configuration)
SELECT authctx._password_dummy_verify('load the library') AS dummy;
SET authctx.password_memlimit = '8MB';
SET authctx.password_opslimit = 2;
SELECT name, boot_val, setting, unit, context
  FROM pg_settings WHERE name LIKE 'authctx.password%' ORDER BY name;

-- ---------------------------------------------------------------- tenants
SELECT authctx.create_tenant('id-acme', 'Acme Inc') AS t_acme \gset
SELECT authctx.create_tenant('id-beta') AS t_beta \gset
SELECT slug, name, id = :'t_acme' AS same_id FROM authctx.tenants
 WHERE slug LIKE 'id-%' ORDER BY slug;
SELECT authctx.create_tenant(repeat('a', 63)) IS NOT NULL AS slug_63_chars;
SELECT authctx.create_tenant('0') IS NOT NULL AS slug_one_digit;
-- duplicate slug
SELECT pg_temp.try($$SELECT authctx.create_tenant('id-acme', 'again')$$);
-- invalid slugs
SELECT left(s, 40) AS slug, length(s), pg_temp.try(format('SELECT authctx.create_tenant(%L)', s))
  FROM unnest(ARRAY['Id-Upper', '-id-dash', '', 'id_under', 'id.dot', 'id acme',
                    'ïd', repeat('a', 64), '00000000-0000-0000-0000-00000000000a']) AS s;
SELECT pg_temp.try($$SELECT authctx.create_tenant(NULL)$$);

-- the tenant resolver: slug or uuid text, NULL when unknown
SELECT authctx._resolve_tenant('id-acme') = :'t_acme' AS by_slug,
       authctx._resolve_tenant(:'t_acme') = :'t_acme' AS by_uuid,
       authctx._resolve_tenant(upper(:'t_acme')) = :'t_acme' AS by_upper_uuid,
       authctx._resolve_tenant('id-nope') IS NULL AS unknown_slug,
       authctx._resolve_tenant('00000000-0000-0000-0000-000000000000') IS NULL AS unknown_uuid,
       authctx._resolve_tenant('ID-ACME') IS NULL AS slug_is_case_sensitive,
       authctx._resolve_tenant(NULL) IS NULL AS null_tenant;

-- ---------------------------------------------------------------- users
SELECT authctx.create_user('Alice@Example.COM', 'Alice') AS u_alice \gset
SELECT authctx.create_user('bob@example.com') AS u_bob \gset
SELECT authctx.create_user('carol@example.com', 'Carol') AS u_carol \gset
SELECT email, display_name, disabled_at IS NULL AS enabled FROM authctx.users
 WHERE id IN (:'u_alice', :'u_bob', :'u_carol') ORDER BY email;
-- duplicates, case-insensitively
SELECT e AS email, pg_temp.try(format('SELECT authctx.create_user(%L)', e))
  FROM unnest(ARRAY['Alice@Example.COM', 'alice@example.com', 'ALICE@EXAMPLE.COM']) AS e;
-- invalid emails
SELECT left(translate(e, E'\t\n', '~~'), 24) AS email, length(e),
       pg_temp.try(format('SELECT authctx.create_user(%L)', e))
  FROM unnest(ARRAY['no-at-sign', 'a@b@example.com', '@example.com', 'alice@', '',
                    'al ice@example.com', 'alice@example.com ', E'al\tice@example.com',
                    E'alice@exa\nmple.com', repeat('a', 243) || '@example.com']) AS e;
SELECT pg_temp.try($$SELECT authctx.create_user(NULL)$$);
SELECT authctx.create_user(repeat('d', 242) || '@example.com') IS NOT NULL AS email_254_chars;

-- set_email
SELECT authctx.set_email(:'u_bob', 'Bob2@Example.com');
SELECT authctx.set_email(:'u_bob', 'bob2@example.com');  -- own address, other case
SELECT email FROM authctx.users WHERE id = :'u_bob';
SELECT pg_temp.try(format('SELECT authctx.set_email(%L, %L)', :'u_bob', 'ALICE@example.com'));
SELECT pg_temp.try(format('SELECT authctx.set_email(%L, %L)', :'u_bob', 'not an email'));
SELECT pg_temp.try(format('SELECT authctx.set_email(%L, NULL)', :'u_bob'));
SELECT pg_temp.try($$SELECT authctx.set_email('00000000-0000-0000-0000-000000000000', 'x@example.com')$$);
SELECT pg_temp.try($$SELECT authctx.set_email(NULL, 'x@example.com')$$);
SELECT email FROM authctx.users WHERE id = :'u_bob';

-- disable / enable (idempotent)
SELECT authctx.disable_user(:'u_carol');
SELECT disabled_at IS NOT NULL AS disabled FROM authctx.users WHERE id = :'u_carol';
SELECT disabled_at AS first_disabled_at FROM authctx.users WHERE id = :'u_carol' \gset
SELECT authctx.disable_user(:'u_carol');
SELECT disabled_at = :'first_disabled_at' AS unchanged FROM authctx.users WHERE id = :'u_carol';
SELECT authctx.enable_user(:'u_carol');
SELECT authctx.enable_user(:'u_carol');
SELECT disabled_at IS NULL AS enabled FROM authctx.users WHERE id = :'u_carol';
SELECT pg_temp.try($$SELECT authctx.disable_user('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.try($$SELECT authctx.enable_user('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.try($$SELECT authctx.disable_user(NULL)$$);

-- ---------------------------------------------------------------- memberships
SELECT authctx.add_member('id-acme', :'u_alice');                  -- default role
SELECT authctx.add_member(:'t_acme', :'u_bob', 'owner');            -- by uuid text
SELECT authctx.add_member(upper(:'t_beta'), :'u_alice', repeat('r', 63));
SELECT t.slug, u.email, m.role FROM authctx.memberships m
  JOIN authctx.tenants t ON t.id = m.tenant_id JOIN authctx.users u ON u.id = m.user_id
 WHERE t.slug LIKE 'id-%' ORDER BY 1, 2;
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', 'id-acme', :'u_alice'));
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', 'id-nope', :'u_alice'));
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L)', '00000000-0000-0000-0000-000000000000', :'u_alice'));
SELECT pg_temp.try(format('SELECT authctx.add_member(NULL, %L)', :'u_alice'));
SELECT pg_temp.try($$SELECT authctx.add_member('id-acme', '00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L, %L)', 'id-acme', :'u_carol', ''));
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L, NULL)', 'id-acme', :'u_carol'));
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L, %L)', 'id-acme', :'u_carol', repeat('r', 64)));
SELECT pg_temp.try(format('SELECT authctx.add_member(%L, %L, %L)', 'id-acme', :'u_carol', repeat('é', 32)));

-- set_member_role
SELECT authctx.set_member_role('id-acme', :'u_alice', 'admin');
SELECT role FROM authctx.memberships WHERE tenant_id = :'t_acme' AND user_id = :'u_alice';
SELECT pg_temp.try(format('SELECT authctx.set_member_role(%L, %L, %L)', 'id-acme', :'u_carol', 'admin'));
SELECT pg_temp.try(format('SELECT authctx.set_member_role(%L, %L, %L)', 'id-nope', :'u_alice', 'admin'));
SELECT pg_temp.try($$SELECT authctx.set_member_role('id-acme', '00000000-0000-0000-0000-000000000000', 'admin')$$);
SELECT pg_temp.try(format('SELECT authctx.set_member_role(%L, %L, %L)', 'id-acme', :'u_alice', ''));

-- remove_member
SELECT authctx.remove_member('id-acme', :'u_bob');
SELECT count(*) AS bob_memberships FROM authctx.memberships WHERE user_id = :'u_bob';
SELECT pg_temp.try(format('SELECT authctx.remove_member(%L, %L)', 'id-acme', :'u_bob'));
SELECT pg_temp.try(format('SELECT authctx.remove_member(%L, %L)', 'id-nope', :'u_alice'));
SELECT pg_temp.try($$SELECT authctx.remove_member('id-acme', '00000000-0000-0000-0000-000000000000')$$);

-- ---------------------------------------------------------------- passwords
SELECT authctx.set_password(:'u_alice', 'Sup3r-Secret-pw');
SELECT hash LIKE '$argon2id$v=19$%' AS argon2id,
       substring(hash from 'm=[0-9]+,t=[0-9]+,p=[0-9]+') AS params
  FROM authctx.password_credentials WHERE user_id = :'u_alice';
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS lower_email;
SELECT authctx.verify_password('ALICE@EXAMPLE.COM', 'Sup3r-Secret-pw') = :'u_alice' AS upper_email;
SELECT authctx.verify_password('alice@example.com', 'sup3r-secret-pw') AS wrong_password;
SELECT authctx.verify_password('alice@example.com', '') AS empty_password;
SELECT authctx.verify_password('nobody@example.com', 'Sup3r-Secret-pw') AS unknown_email;
SELECT authctx.verify_password('bob2@example.com', 'Sup3r-Secret-pw') AS no_password_set;
SELECT authctx.verify_password(NULL, 'Sup3r-Secret-pw') AS null_email;
SELECT authctx.verify_password('alice@example.com', NULL) AS null_password;
SELECT authctx._password_dummy_verify('Sup3r-Secret-pw') AS dummy_is_false;
-- a disabled user never verifies; enabled again, it does
SELECT authctx.disable_user(:'u_alice');
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') AS disabled_user;
SELECT authctx.enable_user(:'u_alice');
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS enabled_again;

-- policy violations: 22023, and no message shows the password
SELECT pg_temp.try(format('SELECT authctx.set_password(%L, %L)', :'u_bob', 'Sup3r-S'));
SELECT pg_temp.try(format('SELECT authctx.set_password(%L, %L)', :'u_bob', ''));
SELECT pg_temp.try(format('SELECT authctx.set_password(%L, NULL)', :'u_bob'));
SELECT pg_temp.try(format('SELECT authctx.set_password(%L, %L)', :'u_bob', 'Sup3r-Secret-pw' || repeat('x', 1010)));
SELECT pg_temp.try($$SELECT authctx.set_password('00000000-0000-0000-0000-000000000000', 'Sup3r-Secret-pw')$$);
SELECT pg_temp.try($$SELECT authctx.set_password(NULL, 'Sup3r-Secret-pw')$$);
SELECT pg_temp.try($$SELECT authctx._password_hash('Sup3r')$$);
-- the length limits: minimum in characters, maximum in bytes
SELECT authctx.set_password(:'u_bob', repeat('ä', 8));       -- 8 characters, 16 bytes
SELECT authctx.verify_password('bob2@example.com', repeat('ä', 8)) = :'u_bob' AS multibyte;
SELECT authctx.set_password(:'u_bob', repeat('x', 1024));    -- exactly the cap
SELECT authctx.verify_password('bob2@example.com', repeat('x', 1024)) = :'u_bob' AS at_cap;
SELECT authctx.verify_password('bob2@example.com', repeat('x', 1025)) AS over_cap;
-- raising the minimum does not lock out existing passwords
SET authctx.password_min_length = 20;
SELECT pg_temp.try(format('SELECT authctx.set_password(%L, %L)', :'u_carol', 'Sup3r-Secret-pw'));
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS still_verifies;
RESET authctx.password_min_length;
-- lowering the cap refuses longer passwords, unhashed
SET authctx.password_max_length = 10;
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') AS over_lowered_cap;
RESET authctx.password_max_length;

-- rehash at the next successful verification when the parameters change
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS before FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
SET authctx.password_memlimit = '16MB';
SELECT authctx._password_needs_rehash(hash) AS needs_rehash FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
SELECT authctx.verify_password('alice@example.com', 'wrong-password') AS wrong;
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS after_failure FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
BEGIN READ ONLY;
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS read_only_ok;
COMMIT;
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS after_read_only FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS ok;
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS after_success,
       authctx._password_needs_rehash(hash) AS needs_rehash
  FROM authctx.password_credentials WHERE user_id = :'u_alice';
SET authctx.password_opslimit = 3;
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS ok;
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS after_opslimit FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
SET authctx.password_opslimit = 2;
SET authctx.password_memlimit = '8MB';
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') = :'u_alice' AS ok;
SELECT substring(hash from 'm=[0-9]+,t=[0-9]+') AS back_to_config FROM authctx.password_credentials
 WHERE user_id = :'u_alice';
-- the dummy verification follows parameter changes too
SET authctx.password_memlimit = '12MB';
SELECT authctx.verify_password('nobody@example.com', 'Sup3r-Secret-pw') AS unknown_email;
SET authctx.password_memlimit = '8MB';
SELECT authctx.verify_password('nobody@example.com', 'Sup3r-Secret-pw') AS unknown_email;

-- set_password revokes the user's other sessions and refresh tokens
INSERT INTO authctx.sessions (id, user_id, family_id, verifier, expires_at)
SELECT gen_random_uuid(), u, gen_random_uuid(), '\x00', clock_timestamp() + interval '1 hour'
  FROM unnest(ARRAY[:'u_alice', :'u_alice', :'u_bob']::uuid[]) AS u;
INSERT INTO authctx.refresh_tokens (id, family_id, session_id, user_id, verifier, expires_at)
SELECT gen_random_uuid(), s.family_id, s.id, s.user_id, '\x00', clock_timestamp() + interval '1 day'
  FROM authctx.sessions s WHERE s.user_id IN (:'u_alice', :'u_bob');
SELECT authctx.set_password(:'u_alice', 'An0ther-Secret-pw');
SELECT u.email, count(*) FILTER (WHERE s.revoked_at IS NULL) AS live_sessions,
       count(*) FILTER (WHERE s.revoked_at IS NOT NULL) AS revoked_sessions,
       (SELECT count(*) FROM authctx.refresh_tokens r
         WHERE r.user_id = u.id AND r.revoked_at IS NULL) AS live_refresh
  FROM authctx.sessions s JOIN authctx.users u ON u.id = s.user_id
 WHERE u.id IN (:'u_alice', :'u_bob') GROUP BY u.id, u.email ORDER BY u.email;
SELECT authctx.verify_password('alice@example.com', 'Sup3r-Secret-pw') AS old_password;
SELECT authctx.verify_password('alice@example.com', 'An0ther-Secret-pw') = :'u_alice' AS new_password;
-- ... but not the session the change is made from; the revoked ones stop
-- working at once (after having been used, so any cache has seen them)
SELECT authctx._token_new('session') AS tok \gset
SELECT authctx._token_new('session') AS tok_other \gset
INSERT INTO authctx.sessions (id, user_id, family_id, verifier, expires_at)
SELECT authctx._token_id(t), :'u_alice', gen_random_uuid(), authctx._token_verifier(t),
       clock_timestamp() + interval '1 hour'
  FROM unnest(ARRAY[:'tok', :'tok_other']::authctx.token[]) AS t;
CREATE ROLE regress_identity_manager NOLOGIN IN ROLE authctx_manager;
SET ROLE regress_identity_manager;
BEGIN;
SELECT user_id = :'u_alice' AS alice, auth_method FROM auth_begin(:'tok_other');
COMMIT;
BEGIN;
SELECT user_id = :'u_alice' AS alice, auth_method FROM auth_begin(:'tok');
SELECT authctx.set_password(:'u_alice', 'Sup3r-Secret-pw');
COMMIT;
SELECT pg_temp.try(format('SELECT auth_begin(%L)', :'tok_other')) AS other_session;
BEGIN;
SELECT user_id = :'u_alice' AS alice FROM auth_begin(:'tok');
COMMIT;
RESET ROLE;
DROP ROLE regress_identity_manager;
SELECT s.id = authctx._token_id(:'tok') AS current_session
  FROM authctx.sessions s WHERE s.user_id = :'u_alice' AND s.revoked_at IS NULL;

-- password_changed audit events, without any secret
SELECT event, user_id = :'u_alice' AS alice, tenant_id,
       session_id IS NOT DISTINCT FROM authctx._token_id(:'tok') AS kept_session,
       db_role = session_user AS by_me, detail
  FROM authctx.audit_log WHERE event = 'password_changed' AND user_id = :'u_alice' ORDER BY id;
SELECT count(*) AS audit_rows_with_secrets FROM authctx.audit_log
 WHERE detail::text ~ '(Secret|argon2)';

-- ---------------------------------------------------------------- OAuth identities
SELECT authctx.link_identity(:'u_alice', 'google', 'g-1001');
SELECT authctx.link_identity(:'u_alice', 'google', 'g-1001');     -- idempotent
SELECT authctx.link_identity(:'u_alice', 'github', 'Alice@Example.COM');
SELECT authctx.link_identity(:'u_bob', 'google', 'g-1002');
SELECT provider, subject, u.email FROM authctx.oauth_identities o JOIN authctx.users u ON u.id = o.user_id
 WHERE u.id IN (:'u_alice', :'u_bob') ORDER BY 1, 2;
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, %L, %L)', :'u_bob', 'google', 'g-1001'));
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, %L, %L)', :'u_bob', '', 'g-1003'));
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, NULL, %L)', :'u_bob', 'g-1003'));
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, %L, %L)', :'u_bob', 'google', ''));
SELECT pg_temp.try(format('SELECT authctx.link_identity(%L, %L, NULL)', :'u_bob', 'google'));
SELECT pg_temp.try($$SELECT authctx.link_identity('00000000-0000-0000-0000-000000000000', 'google', 'g-1003')$$);
SELECT authctx.find_identity('google', 'g-1001') = :'u_alice' AS alice,
       authctx.find_identity('google', 'g-1002') = :'u_bob' AS bob,
       authctx.find_identity('google', 'g-9999') IS NULL AS unknown_subject,
       authctx.find_identity('GOOGLE', 'g-1001') IS NULL AS provider_case_sensitive,
       authctx.find_identity('github', 'alice@example.com') IS NULL AS never_by_email,
       authctx.find_identity('google', 'Alice@Example.COM') IS NULL AS email_is_no_subject,
       authctx.find_identity(NULL, 'g-1001') IS NULL AS null_provider;
SELECT authctx.disable_user(:'u_alice');
SELECT authctx.find_identity('google', 'g-1001') AS disabled_user;
SELECT authctx.enable_user(:'u_alice');
SELECT authctx.find_identity('google', 'g-1001') = :'u_alice' AS enabled_again;

-- ---------------------------------------------------------------- catalog
-- every identity function: SECURITY DEFINER, search_path pinned, commented
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS returns,
       p.prosecdef AS secdef, p.proconfig AS config,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.pronamespace = 'authctx'::regnamespace
   AND p.proname IN ('create_tenant', 'create_user', 'set_email', 'disable_user', 'enable_user',
                     'add_member', 'set_member_role', 'remove_member', 'set_password',
                     'verify_password', 'link_identity', 'find_identity', '_resolve_tenant')
 ORDER BY p.proname;
SELECT pg_get_function_arguments('authctx.add_member(text,uuid,text)'::regprocedure) AS add_member,
       pg_get_function_arguments('authctx.create_tenant(text,text)'::regprocedure) AS create_tenant,
       pg_get_function_arguments('authctx.create_user(text,text)'::regprocedure) AS create_user;
