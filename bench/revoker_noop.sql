-- revoker_noop: the revoker's round trips and bookkeeping at the same rate,
-- without revoking anything (see revoker.sql).
BEGIN \; SELECT bench.revoke_noop() \; COMMIT \;
INSERT INTO bench.noop_log
SELECT current_setting('bench.run', true), currval('bench.noop_seq'), clock_timestamp();
