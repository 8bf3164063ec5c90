-- login_unknown: a password for an email that has no account (run with 4
-- parallel clients); see login_known.
SELECT bench.try_login('bench-nobody@example.com', 'wrong password');
