-- login_known: a wrong password for an account that exists (run with 4
-- parallel clients).  Compared with login_unknown: the two must cost the
-- same, in parallel too (issue 18 point 2), or the time of parallel
-- attempts tells whether an email has an account.
SELECT bench.try_login('bench-known@example.com', 'wrong password');
