-- examples/notes-app/schema.sql: the notes application's database objects,
-- run once by a superuser (the DBA) in the application's database.
--
--   psql -v ON_ERROR_STOP=1 -d notes -f schema.sql
--
-- The application connects as notes_app, a member of authctx_app: it may
-- call auth_begin, login, refresh, logout, webauthn_challenge,
-- login_webauthn, and spend one-time tokens and codes (verify_email,
-- reset_password, verify_totp), and read and write notes.notes under the
-- tenant isolation policy.  As notes_registrar (authctx_manager) it
-- registers passkeys, issues reset and verification tokens and enrols
-- TOTP, each for the user auth_begin just validated (or, for "forgot
-- password", the user notes.accounts names).  It owns nothing and bypasses
-- nothing: every row it sees or writes is checked by PostgreSQL against
-- the context auth_begin published.

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS authctx;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'notes_app') THEN
    CREATE ROLE notes_app LOGIN;   -- give it a password outside trusted setups
  END IF;
END
$$;
GRANT authctx_app TO notes_app;

-- Registering a passkey, issuing a password-reset or email-verification
-- token and enrolling TOTP are identity management (authctx_manager): the
-- app uses this role for those endpoints only, right after auth_begin
-- validated the user's own token in the same transaction (for "forgot
-- password", which has no session, for the user notes.accounts maps the
-- email to).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'notes_registrar') THEN
    CREATE ROLE notes_registrar LOGIN;
  END IF;
END
$$;
GRANT authctx_manager TO notes_registrar;

CREATE SCHEMA notes;
GRANT USAGE ON SCHEMA notes TO notes_app;

CREATE TABLE notes.notes (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  author_id   uuid NOT NULL DEFAULT authctx.user_id(),
  title       text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  body        text NOT NULL DEFAULT '' CHECK (char_length(body) <= 10000),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE notes.notes IS 'the notes of every tenant, one policy apart';

-- RLS, forced, one policy: tenant_id = authctx.tenant_id(); tenant_id
-- defaults to the context's tenant; an index on tenant_id.
SELECT authctx.enable_tenant_isolation('notes.notes');

-- Who may change notes is the database's business too: a member whose role
-- in the tenant is 'viewer' reads only; the author of a note is always the
-- context's user, and updated_at follows changes.
CREATE FUNCTION notes.guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF authctx.role() IS NOT DISTINCT FROM 'viewer' THEN
    RAISE EXCEPTION 'viewers cannot change notes' USING ERRCODE = '42501';
  END IF;
  IF TG_OP = 'INSERT' THEN
    NEW.author_id := authctx.user_id();
  ELSIF TG_OP = 'UPDATE' THEN
    NEW.author_id := OLD.author_id;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := pg_catalog.now();
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON notes.notes
  FOR EACH ROW EXECUTE FUNCTION notes.guard();

GRANT SELECT, DELETE ON notes.notes TO notes_app;
GRANT INSERT (title, body), UPDATE (title, body) ON notes.notes TO notes_app;

-- Deleting a note needs a second factor: a session stepped up with a TOTP
-- code (authctx.verify_totp) or a passkey login.  The restrictive policy
-- narrows the tenant isolation policy; without it DELETE sees no rows.
CREATE POLICY notes_delete_step_up ON notes.notes AS RESTRICTIVE FOR DELETE
  USING ('otp' = ANY (authctx.amr()) OR 'webauthn' = ANY (authctx.amr()));

-- The application's own directory of its users: "forgot password" looks
-- the email up here (authctx does not let the app read authctx.users),
-- only as notes_registrar.  The sign-up code (seed.sql here) fills it.
CREATE TABLE notes.accounts (
  user_id  uuid PRIMARY KEY,
  email    text NOT NULL
);
CREATE UNIQUE INDEX accounts_email ON notes.accounts (lower(email));
GRANT USAGE ON SCHEMA notes TO notes_registrar;
GRANT SELECT ON notes.accounts TO notes_registrar;
