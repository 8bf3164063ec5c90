-- login_load: the database of phase L (login attempts, issue 18 point 2).
-- One account with a password; bench.try_login wraps authctx.login so that
-- a failed attempt (28P01) does not end the pgbench client (the failure is
-- still recorded by the autonomous worker, as for any failed login).  The
-- lockout threshold is raised so that the known account's wrong guesses
-- stay wrong guesses (bench/run also clears the streak before each run):
-- a locked account costs the same (a dummy hash), but the measure is of
-- the plain path.
SET client_min_messages = warning;
CREATE EXTENSION authctx;
SELECT authctx.set_password(authctx.create_user('bench-known@example.com'), 'bench password 1');
CREATE SCHEMA bench;
CREATE FUNCTION bench.try_login(email text, password text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM authctx.login(email, password);
  RETURN true;
EXCEPTION WHEN invalid_password THEN
  RETURN false;
END
$$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_app') THEN
    CREATE ROLE bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END $$;
GRANT authctx_app TO bench_app;
GRANT USAGE ON SCHEMA bench TO bench_app;
GRANT EXECUTE ON FUNCTION bench.try_login(text, text) TO bench_app;
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET authctx.lockout_threshold = 1000', current_database());
END $$;
