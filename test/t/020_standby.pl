# A streaming hot standby: sessions authenticate there (the request path
# writes nothing), and a revocation, user disable or membership removal on
# the primary is honoured there once replayed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('standby_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n");
$primary->start;
$primary->safe_psql('postgres', q{
  CREATE EXTENSION authctx;
  CREATE ROLE app LOGIN;
  GRANT authctx_app TO app;
  SELECT authctx.create_tenant('acme');
  SELECT authctx.add_member('acme', authctx.create_user('alice@acme.test'));
  SELECT authctx.add_member('acme', authctx.create_user('carol@acme.test'));
  CREATE TABLE notes (id serial, tenant_id uuid NOT NULL, body text);
  SELECT authctx.enable_tenant_isolation('notes');
  GRANT SELECT ON notes TO app;
});
my $session_sql = q{SELECT authctx.create_session(id) FROM authctx.users WHERE email = };
my $tok = $primary->safe_psql('postgres', $session_sql . q{'alice@acme.test'});
my $tok2 = $primary->safe_psql('postgres', $session_sql . q{'alice@acme.test'});
my $tok3 = $primary->safe_psql('postgres', $session_sql . q{'carol@acme.test'});
$primary->safe_psql('postgres', qq{
  BEGIN; SELECT auth_begin('$tok'); INSERT INTO notes (body) VALUES ('n1'), ('n2'); COMMIT;});

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby_replica');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# Run SQL on the standby as the application role.
sub on_standby
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $standby->psql('postgres', $sql, extra_params => [ '-U', 'app' ]);
	return ($rc, $out, $err);
}

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
my ($rc, $out, $err) = on_standby(qq{BEGIN; SELECT (auth_begin('$tok')).role; SELECT count(*) FROM notes; COMMIT;});
is($rc, 0, 'auth_begin succeeds on the standby');
is($out, "member\n2", 'context and isolation work on the standby');

# Revocation on the primary is honoured on the standby once replayed.
$primary->safe_psql('postgres', qq{SELECT authctx.revoke_session(authctx._token_id('$tok'::authctx.token))});
$primary->wait_for_catchup($standby);
($rc, $out, $err) = on_standby(qq{SELECT auth_begin('$tok')});
isnt($rc, 0, 'revoked session refused on the standby');
like($err, qr/authentication failed/, 'with the generic message');
my $body = substr($tok, 4, 20);
unlike($err, qr/\Q$body\E/, 'and without the token');

# Removal from the tenant is honoured too.
($rc, $out) = on_standby(qq{SELECT (auth_begin('$tok3')).role});
is($out, 'member', 'carol authenticates on the standby');
$primary->safe_psql('postgres', q{
  SELECT authctx.remove_member('acme', id) FROM authctx.users WHERE email = 'carol@acme.test'});
$primary->wait_for_catchup($standby);
($rc, $out, $err) = on_standby(qq{SELECT auth_begin('$tok3')});
like($err, qr/not a member/, 'membership removal honoured on the standby');

# A disabled user is refused on the standby.
($rc, $out) = on_standby(qq{SELECT (auth_begin('$tok2')).role});
is($out, 'member', 'second session works before disable');
$primary->safe_psql('postgres', q{
  SELECT authctx.disable_user(id) FROM authctx.users WHERE email = 'alice@acme.test'});
$primary->wait_for_catchup($standby);
($rc, $out, $err) = on_standby(qq{SELECT auth_begin('$tok2')});
like($err, qr/authentication failed/, 'disabled user refused on the standby');

$standby->stop;
$primary->stop;
done_testing();
