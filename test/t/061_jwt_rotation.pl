# JWT key rotation through auth_begin, in every backend, in both preload
# modes: two application connections that have verified (and cached the
# keys of) a token, and an administrator who rotates the issuer's key set
# in a third.  Old key accepted during the overlap, refused once removed;
# a removed issuer's tokens refused; a revocation of the user refuses the
# token at the next call in each connection.  Tokens and key sets:
# test/fixtures/jwt/fixtures.sql (PyJWT; the rotation tokens expire in 2100).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixtures = slurp_file("$ENV{TESTDIR}/test/fixtures/jwt/fixtures.sql");
my $iss = 'https://rotate.example.com';

for my $mode ('preload', 'nopreload')
{
	my $node = PostgreSQL::Test::Cluster->new("jwt_rotation_$mode");
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		($mode eq 'preload' ? "shared_preload_libraries = 'authctx'" : ''),
		'max_worker_processes = 16', 'authctx.cleanup_interval = 0', ''));
	$node->start;
	$node->safe_psql('postgres', $fixtures . qq{
	  SET client_min_messages = warning;
	  CREATE EXTENSION authctx;
	  CREATE ROLE app LOGIN;
	  GRANT authctx_app TO app;
	  CREATE TABLE fixture (name text PRIMARY KEY, value text);
	  INSERT INTO fixture SELECT name, token FROM jwt_token WHERE name LIKE 'rotate_%';
	  INSERT INTO fixture SELECT 'jwks_' || name, jwks::text FROM jwt_key_set WHERE name LIKE 'rotate_%';
	  GRANT SELECT ON fixture TO app;
	  SELECT authctx.create_tenant('rot-acme');
	  SELECT authctx.add_member('rot-acme', authctx.create_user('rot\@example.com'));
	  SELECT authctx.link_identity(id, '$iss', 'user-1') FROM authctx.users WHERE email = 'rot\@example.com';
	  SELECT authctx.add_issuer('$iss', 'rot', (SELECT value::jsonb FROM fixture WHERE name = 'jwks_rotate_old'));
	  CREATE FUNCTION public.rot_try(name text) RETURNS text LANGUAGE plpgsql AS \$\$
	  BEGIN
	    PERFORM auth_begin((SELECT value FROM public.fixture f WHERE f.name = rot_try.name));
	    RETURN (SELECT slug FROM authctx.my_tenants() WHERE tenant_id = authctx.tenant_id());
	  EXCEPTION WHEN OTHERS THEN
	    RETURN SQLSTATE;
	  END \$\$;
	});

	my @app = map { $node->background_psql('postgres', extra_params => [ '-U', 'app' ]) } (1, 2);
	my $check = sub {
		my ($want_old, $want_new, $what) = @_;
		for my $i (0, 1)
		{
			is($app[$i]->query_safe(q{SELECT public.rot_try('rotate_old') || ' ' || public.rot_try('rotate_new')}),
				"$want_old $want_new", "$mode, connection " . ($i + 1) . ": $what");
		}
	};
	my $keys = sub {
		$node->safe_psql('postgres', qq{SELECT authctx.set_issuer_keys('$iss',
		  (SELECT value::jsonb FROM fixture WHERE name = 'jwks_$_[0]'))});
	};

	$check->('rot-acme', '28000', 'old key only: the old token works, the new one not yet');
	$keys->('rotate_both');
	$check->('rot-acme', 'rot-acme', 'overlap: both keys accepted');
	$keys->('rotate_new');
	$check->('28000', 'rot-acme', 'old key removed: its token refused at the next call');
	$node->safe_psql('postgres', q{SELECT authctx.revoke_user_sessions(id) FROM authctx.users WHERE email = 'rot@example.com'});
	$check->('28000', '28000', 'the user revoked: the token (iat 2023) refused');
	$node->safe_psql('postgres', q{UPDATE authctx.users SET sessions_revoked_before = NULL WHERE email = 'rot@example.com'});
	$check->('28000', 'rot-acme', 'the revocation lifted by hand: accepted again');
	$node->safe_psql('postgres', qq{SELECT authctx.remove_issuer('$iss')});
	$check->('28000', '28000', 'issuer removed: every token refused');
	$_->quit for @app;
	$node->stop;
}

done_testing();
