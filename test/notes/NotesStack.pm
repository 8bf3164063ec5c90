# test/notes/NotesStack.pm: the notes application on loopback for TAP tests.
#
#   my $stack = NotesStack->start(name => 'http', preload => 1,
#                                 conf => "log_statement = all\n");
#   $stack->url, $stack->port, $stack->node, $stack->app_log
#   $stack->outbox        # the messages the app "mailed": [{to, purpose, link}]
#   my $r = $stack->request('POST', '/login', json => {...}, cookie => $c,
#                           headers => {...});   # {status, headers, json, body}
#   $stack->stop;
#
# Starts, in this order: a PostgreSQL::Test::Cluster node (authctx
# preloaded or not) with examples/notes-app/schema.sql and seed.sql loaded
# into database "notes"; PgBouncer in transaction mode with a pool of two
# server connections (so that clients of different tenants share them);
# examples/notes-app/app.py connected through PgBouncer as notes_app.  All on
# 127.0.0.1, free ports.  The browser test talks to the app as
# http://localhost:<port> (rp id "localhost") and to tenant hosts as
# http://<tenant>.localhost:<port>.
package NotesStack;

use strict;
use warnings;
use Carp;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our $PYTHON = '/usr/bin/python3';
our $PGBOUNCER = '/usr/sbin/pgbouncer';
my @running;    # stacks to stop if the test dies

# Why a stack cannot run here (a missing program), or undef.
sub unavailable
{
	return 'pgbouncer not installed' unless -x $PGBOUNCER;
	return 'python3-psycopg not installed'
	  unless -x $PYTHON && system($PYTHON, '-c', 'import psycopg') == 0;
	return undef;
}

sub start
{
	my ($class, %opt) = @_;
	my $self = bless { name => $opt{name} || 'notes' }, $class;
	my $root = $ENV{TESTDIR};
	my $app_dir = "$root/examples/notes-app";

	my $node = PostgreSQL::Test::Cluster->new("notes_$self->{name}");
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n")
	  if $opt{preload};
	# TOTP secrets are sealed under this key (a fresh one per stack)
	$node->append_conf('postgresql.conf',
		"authctx.secret_key = '" . unpack('H*', join('', map { chr int rand 256 } 1 .. 32)) . "'\n");
	$node->append_conf('postgresql.conf', $opt{conf}) if $opt{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE notes');
	for my $f ("$app_dir/schema.sql", "$app_dir/seed.sql")
	{
		my ($rc, $out, $err) = $node->psql('notes', undef,
			extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $f ]);
		croak "loading $f failed: $err" if $rc != 0;
	}
	$self->{node} = $node;

	# PgBouncer: transaction pooling, two server connections for everyone
	my $dir = PostgreSQL::Test::Utils::tempdir;
	$self->{dir} = $dir;
	my $bport = PostgreSQL::Test::Cluster::get_free_port();
	$self->{bouncer_port} = $bport;
	PostgreSQL::Test::Utils::append_to_file("$dir/users.txt",
		qq{"notes_app" ""\n"notes_registrar" ""\n});
	PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", join("\n",
		'[databases]',
		'notes = host=' . $node->host . ' port=' . $node->port . ' dbname=notes',
		'[pgbouncer]',
		'listen_addr = 127.0.0.1',
		"listen_port = $bport",
		'unix_socket_dir =',
		'auth_type = trust',
		"auth_file = $dir/users.txt",
		'pool_mode = transaction',
		'default_pool_size = ' . ($opt{pool_size} || 2),
		'max_client_conn = 200',
		'server_reset_query =',
		"logfile = $dir/pgbouncer.log",
		"pidfile = $dir/pgbouncer.pid", ''));
	$self->{bouncer} = IPC::Run::start([ $PGBOUNCER, "$dir/pgbouncer.ini" ],
		'>', "$dir/pgbouncer.stdout", '2>', "$dir/pgbouncer.stderr");
	push @running, $self;

	# The application, on a free port of its own
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	$self->{port} = $port;
	$self->{url} = "http://127.0.0.1:$port";
	$self->{app_log} = "$dir/app.log";
	$self->{outbox} = "$dir/outbox.jsonl";
	$self->{app} = IPC::Run::start(
		[ $PYTHON, "$app_dir/app.py",
		  '--dsn', "host=127.0.0.1 port=$bport dbname=notes user=notes_app",
		  '--registrar-dsn', "host=127.0.0.1 port=$bport dbname=notes user=notes_registrar",
		  '--listen', "127.0.0.1:$port", '--rp-id', 'localhost',
		  '--origin', "http://localhost:$port", '--tenant-domain', 'localhost',
		  '--outbox', $self->{outbox}, '--pool-size', $opt{app_pool} || 8 ],
		'>', $self->{app_log}, '2>&1');

	# ready when /healthz answers 200 (the app reached PostgreSQL through PgBouncer)
	my $ready = 0;
	for (1 .. 150)
	{
		my $r = eval { $self->request('GET', '/healthz') };
		if ($r && $r->{status} == 200) { $ready = 1; last; }
		select(undef, undef, undef, 0.1);
	}
	croak "the notes app did not start:\n" . slurp_file($self->{app_log}) unless $ready;
	return $self;
}

sub node { $_[0]{node} }
sub url { $_[0]{url} }
sub port { $_[0]{port} }
sub app_log { slurp_file($_[0]{app_log}) }
sub bouncer_log { slurp_file("$_[0]{dir}/pgbouncer.log") }
sub outbox
{
	my ($self) = @_;
	return [] unless -e $self->{outbox};
	return [ map { decode_json($_) } grep { length } split /\n/, slurp_file($self->{outbox}) ];
}

# One HTTP request over a fresh connection (HTTP/1.1, Connection: close;
# raw, because the tests set Host themselves).  Options: json (a body, sent
# as application/json), body + content_type (raw), cookie (the session
# token, as the cookie), bearer (the token, as Authorization), headers
# (more headers, Host included).  Returns {status, headers (lower-case
# names; set-cookie a list), body, json}.
sub request
{
	my ($self, $method, $path, %o) = @_;
	my %h = (host => "127.0.0.1:$self->{port}", connection => 'close');
	$h{ lc $_ } = $o{headers}{$_} for keys %{ $o{headers} || {} };
	my $content = '';
	if (exists $o{json})
	{
		$content = encode_json($o{json});
		$h{'content-type'} = 'application/json';
	}
	elsif (exists $o{body})
	{
		$content = $o{body};
		$h{'content-type'} = $o{content_type} if $o{content_type};
	}
	$h{'content-length'} = length($content) if length($content) || $method =~ /^(POST|PATCH)$/;
	$h{cookie} = "notes_session=$o{cookie}" if defined $o{cookie};
	$h{authorization} = "Bearer $o{bearer}" if defined $o{bearer};
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
		Proto => 'tcp', Timeout => 30) or croak "connect: $!";
	print $sock "$method $path HTTP/1.1\r\n",
	  (map { "$_: $h{$_}\r\n" } sort keys %h), "\r\n", $content;
	local $/;
	my $raw = <$sock> // '';
	close $sock;
	my ($head, $body) = split /\r\n\r\n/, $raw, 2;
	my ($status_line, @lines) = split /\r\n/, $head // '';
	my ($status) = ($status_line // '') =~ m{^HTTP/1\.[01] (\d{3})} or croak "no HTTP answer";
	my %rh = ('set-cookie' => []);
	for (@lines)
	{
		my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
		$k = lc $k;
		if ($k eq 'set-cookie') { push @{ $rh{$k} }, $v } else { $rh{$k} = $v }
	}
	$body //= '';
	my $json = length($body) ? eval { decode_json($body) } : undef;
	return { status => $status, headers => \%rh, body => $body, json => $json };
}

# The session token a response set in its cookie, or undef.
sub session_cookie
{
	my ($r) = @_;
	for my $c (@{ $r->{headers}{'set-cookie'} })
	{
		return $1 if $c =~ /^notes_session=([^;]*)/;
	}
	return undef;
}

sub stop
{
	my ($self) = @_;
	for my $h (grep { defined } @$self{qw(app bouncer)})
	{
		$h->signal('TERM') if $h->pumpable;
		eval { $h->finish };
	}
	delete @$self{qw(app bouncer)};
	@running = grep { $_ != $self } @running;
	$self->{node}->stop if $self->{node};
	delete $self->{node};
}

END
{
	# a dying test still stops what it started
	for my $s (@running)
	{
		for my $h (grep { defined } @$s{qw(app bouncer)})
		{
			eval { $h->kill_kill };
		}
	}
}

1;
