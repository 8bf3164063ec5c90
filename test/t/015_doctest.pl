# The documentation is tested: README.md's getting-started path (and every
# tutorial under docs/) runs as written, and its tables of who may call what
# and of settings agree with the database.
#
#  1. SQL blocks.  A ```sql block right after a line "<!-- doctest -->" is run;
#     every ```sql block under "## Getting started" must be marked so, and
#     every one of a docs/*.md file whose first line is
#     "<!-- doctest: tutorial -->".  A document's marked blocks run top to
#     bottom in ONE psql session (`psql -X -q`), connected as the bootstrap
#     superuser, as a reader pastes them: psql variables set with \gset flow
#     from block to block.  Each block after the first says who runs it: its
#     first statement is SET ROLE <role> or RESET ROLE (the roles are created
#     by the text itself).  A ```text block that follows a marked block (only
#     blank lines between) is its expected output: everything psql prints
#     for that block, errors, hints and notices included, compared after
#     dropping trailing blanks and the "psql:<stdin>:N: " prefix psql adds
#     when reading a script.  A block whose expected output shows an ERROR
#     runs with ON_ERROR_STOP off; any other block must print no ERROR,
#     WARNING or NOTICE and stops the run at its first error.  Each document
#     runs on a fresh cluster, once with shared_preload_libraries = 'authctx'
#     and once without: the output must be the same.
#  2. No code block contains sudo (the README's shell commands are for a root
#     shell on a fresh machine).
#  3. Who may call what: every README table with a "who" column lists
#     functions (`name(...)` in its first cell) and the lowest role that may
#     call them: PUBLIC, authctx_app, authctx_manager, authctx_admin, or
#     superuser (no grant).  Each overload of each listed function must be
#     executable by that role and every role above it (PUBLIC < authctx_app <
#     authctx_manager < authctx_admin) and by none below
#     (has_function_privilege); every function of the extension that any of
#     them may execute must be listed (the token type's I/O functions aside).
#     The roles table (first column `authctx_...`, second "may") names each
#     function in the row of the lowest role that may call it.
#  4. Settings: the README's settings table lists every authctx.* setting of
#     pg_settings but the context parameters, with the default SHOW prints on
#     a cluster that sets none, and who may set it as pg_settings.context and
#     a non-superuser's attempt to read it say.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $top = $ENV{TESTDIR} // '.';

# ---------------------------------------------------------------- markdown
# The fenced code blocks of a Markdown file, each with its info string, text,
# first line number, whether the line before its fence is "<!-- doctest -->",
# the "## " section it is in, and whether a ```text block follows it.
sub md_blocks
{
	my ($file) = @_;
	my @lines = split /\n/, slurp_file($file), -1;
	my (@blocks, $section, $prev, $fence, $cur);
	$section = '';
	$prev = '';
	for my $i (0 .. $#lines)
	{
		my $l = $lines[$i];
		if (defined $fence)
		{
			if ($l =~ /^\s*\Q$fence\E\s*$/)
			{
				push @blocks, $cur;
				undef $fence;
				$prev = '';
			}
			else
			{
				# a block inside a list item: drop the item's indentation
				$l =~ s/^ {0,$cur->{indent}}//;
				$cur->{text} .= "$l\n";
			}
			next;
		}
		if ($l =~ /^( *)(```+|~~~+)\s*([\w+-]*)/)
		{
			my ($indent, $lang) = (length($1), $3);
			$fence = $2;
			$cur = { lang => $lang, text => '', line => $i + 1, section => $section,
				indent => $indent,
				marked => ($prev =~ /^\s*<!--\s*doctest\s*-->\s*$/ ? 1 : 0) };
			next;
		}
		$section = $1 if $l =~ /^##\s+(.*?)\s*$/;
		$prev = $l if $l =~ /\S/;
	}
	# a ```text block directly after a marked block is its output
	for my $k (1 .. $#blocks)
	{
		my ($a, $b) = @blocks[ $k - 1, $k ];
		next unless $a->{marked} && $b->{lang} eq 'text';
		my $a_end = $a->{line} + scalar(split /\n/, $a->{text}, -1);
		my @between = @lines[ $a_end .. $b->{line} - 2 ];
		$a->{expected} = $b->{text} unless grep { /\S/ } @between;
	}
	return @blocks;
}

# Output as compared: no trailing blanks, no psql script prefix, no blank
# lines at either end.
sub normalise
{
	my ($s) = @_;
	$s =~ s/^psql:<stdin>:\d+: //mg;
	$s =~ s/[ \t]+$//mg;
	$s =~ s/\A\n+//;
	$s =~ s/\n+\z//;
	return $s;
}

# ---------------------------------------------------------------- documents
my @docs = ("$top/README.md");
for my $f (sort glob("$top/docs/*.md"))
{
	my ($first) = split /\n/, slurp_file($f);
	push @docs, $f if defined $first && $first =~ /^<!--\s*doctest:\s*tutorial\s*-->/;
}

my %blocks_of;
for my $doc (@docs)
{
	my @b = md_blocks($doc);
	$blocks_of{$doc} = \@b;
	(my $short = $doc) =~ s{^\Q$top\E/}{};
	my @sudo = grep { $_->{text} =~ /\bsudo\b/ } @b;
	ok(!@sudo, "$short: no code block uses sudo")
	  or diag(join "\n", map { "line $_->{line}" } @sudo);
	my $tutorial = $doc ne "$top/README.md";
	my @unmarked = grep {
		$_->{lang} eq 'sql' && !$_->{marked}
		  && ($tutorial || $_->{section} eq 'Getting started')
	} @b;
	ok(!@unmarked, "$short: every SQL block of the tested path is marked <!-- doctest -->")
	  or diag(join "\n", map { "unmarked sql block at line $_->{line}" } @unmarked);
	my @marked = grep { $_->{marked} } @b;
	ok(scalar(@marked) > 0, "$short: has tested blocks");
	my @norole = grep {
		$_->{text} !~ /\A(?:\s*--[^\n]*\n|\s*\n)*\s*(?:SET\s+ROLE\s+\w+|RESET\s+ROLE)\s*;/i
	} @marked[ 1 .. $#marked ];
	ok(!@norole, "$short: every tested block after the first starts with SET ROLE or RESET ROLE")
	  or diag(join "\n", map { "line $_->{line}" } @norole);
	my @wrong = grep { $_->{marked} && $_->{lang} ne 'sql' } @b;
	ok(!@wrong, "$short: only sql blocks are marked")
	  or diag(join "\n", map { "line $_->{line}: $_->{lang}" } @wrong);
}

# ---------------------------------------------------------------- running
# Run a document's marked blocks on $node; returns the output of each block
# (by index among the marked ones) and psql's exit code.
sub run_doc
{
	my ($node, $doc) = @_;
	my @marked = grep { $_->{marked} } @{ $blocks_of{$doc} };
	my $script = '';
	for my $i (0 .. $#marked)
	{
		my $errors = defined $marked[$i]{expected} && $marked[$i]{expected} =~ /^(psql:[^\n]*: )?ERROR:/m;
		$script .= "\\echo '<<<doctest $i>>>'\n";
		$script .= "\\set ON_ERROR_STOP 0\n" if $errors;
		$script .= $marked[$i]{text};
		$script .= "\\set ON_ERROR_STOP 1\n" if $errors;
	}
	$script .= "\\echo '<<<doctest end>>>'\n";
	my $out = '';
	IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$script, '>&', \$out);
	my $rc = $? >> 8;
	my @parts = split /^<<<doctest (\d+|end)>>>\n/m, $out;
	my %by;
	shift @parts;    # before the first marker: nothing
	while (@parts)
	{
		my ($k, $text) = splice @parts, 0, 2;
		$by{$k} = $text // '';
	}
	return (\@marked, \%by, $rc);
}

my %outputs;    # doc => mode => [ outputs ]
for my $mode ('preload', 'nopreload')
{
	for my $doc (@docs)
	{
		(my $short = $doc) =~ s{^\Q$top\E/}{};
		(my $name = "doc_${mode}_$short") =~ s/\W/_/g;
		my $node = PostgreSQL::Test::Cluster->new($name);
		$node->init;
		$node->append_conf('postgresql.conf', "shared_preload_libraries = 'authctx'\n")
		  if $mode eq 'preload';
		$node->start;
		my ($marked, $by, $rc) = run_doc($node, $doc);
		ok(exists $by->{end} && $rc == 0, "$short ($mode): every tested block ran to its end")
		  or diag("psql exit code $rc; last block started: "
			  . (sort { $b <=> $a } grep { /^\d+$/ } keys %$by)[0]);
		for my $i (0 .. $#$marked)
		{
			my $blk = $marked->[$i];
			my $got = $by->{$i};
			my $where = "$short line $blk->{line} ($mode)";
			if (!defined $got)
			{
				fail("$where: ran");
				next;
			}
			if (defined $blk->{expected})
			{
				is(normalise($got), normalise($blk->{expected}), "$where: output as the text shows")
				  or diag("psql printed:\n$got");
			}
			else
			{
				unlike($got, qr/^(psql:<stdin>:\d+: )?(ERROR|WARNING|NOTICE|FATAL):/m,
					"$where: no error, warning or notice")
				  or diag($got);
			}
			$outputs{$doc}{$mode}[$i] = normalise($got);
		}

		# ------------------------------------------------ tables (once, preloaded)
		if ($mode eq 'preload' && $doc eq "$top/README.md")
		{
			check_matrix($node, $doc);
			check_settings($node, $doc);
		}
		$node->stop;
	}
}
for my $doc (@docs)
{
	(my $short = $doc) =~ s{^\Q$top\E/}{};
	is_deeply($outputs{$doc}{nopreload}, $outputs{$doc}{preload},
		"$short: the same output with and without preloading");
}

# ---------------------------------------------------------------- who may call what
# Rows of the Markdown tables of $file whose header has a column named $col:
# a list of [ cells ] (backticks kept).
sub md_table_rows
{
	my ($file, $col) = @_;
	my @rows;
	my $idx;
	my $in = 0;
	for my $l (split /\n/, slurp_file($file))
	{
		if ($l !~ /^\|/)
		{
			$in = 0;
			undef $idx;
			next;
		}
		my @cells = map { s/^\s+|\s+$//gr } split /(?<!\\)\|/, $l;
		shift @cells;
		if (!$in)
		{
			$in = 1;
			($idx) = grep { lc($cells[$_]) eq $col } 0 .. $#cells;
			next;
		}
		next if $l =~ /^\|[\s:|-]+\|?$/;
		push @rows, [ $cells[0], defined $idx ? $cells[$idx] : undef, @cells ] if defined $idx;
	}
	return @rows;
}

sub check_matrix
{
	my ($node, $doc) = @_;
	my %level = (PUBLIC => 0, authctx_app => 1, authctx_manager => 2, authctx_admin => 3, superuser => 4);
	my @roles = ('public', 'authctx_app', 'authctx_manager', 'authctx_admin');

	# the extension's functions: "schema.name" => [ [ oid, public, app, manager, admin ] ]
	my %fn;
	for my $row (split /\n/, $node->safe_psql('postgres', q{
	  SELECT n.nspname || '.' || p.proname, p.oid,
	         has_function_privilege('public', p.oid, 'EXECUTE'),
	         has_function_privilege('authctx_app', p.oid, 'EXECUTE'),
	         has_function_privilege('authctx_manager', p.oid, 'EXECUTE'),
	         has_function_privilege('authctx_admin', p.oid, 'EXECUTE')
	    FROM pg_proc p
	    JOIN pg_namespace n ON n.oid = p.pronamespace
	    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'authctx'
	   WHERE p.proname NOT IN ('token_in', 'token_out', 'token_recv', 'token_send')}))
	{
		my ($name, $oid, @priv) = split /\|/, $row;
		push @{ $fn{$name} }, [ $oid, map { $_ eq 't' } @priv ];
	}

	my %documented;
	my @bad;
	for my $r (md_table_rows($doc, 'who'))
	{
		my ($first, $who) = @$r;
		$who =~ s/`//g;
		if (!exists $level{$who})
		{
			push @bad, "row '$first': unknown who '$who'";
			next;
		}
		my @names = $first =~ /`(?:public\.)?([\w.]+)\(/g;
		push @bad, "row '$first': no function" unless @names;
		for my $n (@names)
		{
			my $q = $n =~ /\./ ? $n : "public.$n";
			if (!$fn{$q})
			{
				push @bad, "$q: documented, but the extension has no such function";
				next;
			}
			$documented{$q} = $level{$who};
			for my $o (@{ $fn{$q} })
			{
				my ($oid, @priv) = @$o;
				for my $k (0 .. 3)
				{
					my $want = $k >= $level{$who} ? 1 : 0;
					push @bad, sprintf("%s (oid %s): %s %s execute it, the README says %s",
						$q, $oid, $roles[$k], $priv[$k] ? 'may' : 'may not', $who)
					  if ($priv[$k] ? 1 : 0) != $want;
				}
			}
		}
	}
	for my $q (sort keys %fn)
	{
		next if exists $documented{$q};
		my @who = map { my $o = $_; grep { $o->[ $_ + 1 ] } 0 .. 3 } @{ $fn{$q} };
		push @bad, "$q: executable by " . join(',', map { $roles[$_] } @who) . " but not in the README"
		  if @who;
	}
	ok(!@bad, 'README: the who-may-call-what tables agree with has_function_privilege')
	  or diag(join "\n", @bad);

	# the roles table: each function named in the row of its lowest role
	my %by_name;
	for my $q (keys %documented)
	{
		(my $short = $q) =~ s/^(public|authctx)\.//;
		$by_name{$short} = $documented{$q};
	}
	my @rbad;
	my $rows = 0;
	for my $r (md_table_rows($doc, 'may'))
	{
		my ($role, $may) = @$r;
		$role =~ s/`//g;
		next unless exists $level{$role} && $role =~ /^authctx_/;
		$rows++;
		for my $n ($may =~ /`(?:authctx\.)?(\w+)(?:\(\))?`/g)
		{
			next unless exists $by_name{$n};
			push @rbad, "$n: in the row of $role, but the Reference says "
			  . (grep { $level{$_} == $by_name{$n} } keys %level)[0]
			  if $by_name{$n} != $level{$role};
		}
	}
	ok($rows == 3 && !@rbad, 'README: the roles table names each function at its lowest role')
	  or diag("rows: $rows\n" . join "\n", @rbad);
}

# ---------------------------------------------------------------- settings
sub check_settings
{
	my ($node, $doc) = @_;
	my %set_by = (
		user => 'anyone',
		superuser => 'superuser',
		sighup => 'postgresql.conf, reload',
		postmaster => 'postgresql.conf, restart');
	$node->safe_psql('postgres', 'CREATE ROLE doctest_reader LOGIN');
	my %actual;
	for my $row (split /\n/, $node->safe_psql('postgres', q{
	  SELECT name, context, current_setting(name) FROM pg_settings
	   WHERE name LIKE 'authctx.%'
	     AND name NOT IN ('authctx.user_id', 'authctx.tenant_id', 'authctx.role', 'authctx.session_id')}))
	{
		my ($name, $context, $value) = split /\|/, $row, -1;
		my ($rc) = $node->psql('postgres', "SELECT current_setting('$name')",
			extra_params => [ '-U', 'doctest_reader' ]);
		my $who = $set_by{$context} // "context $context";
		$who .= '; hidden' if $rc != 0;
		$actual{$name} = [ $value eq '' ? 'empty' : $value, $who ];
	}
	my @bad;
	my %seen;
	for my $r (md_table_rows($doc, 'set by'))
	{
		my ($name, $who, undef, $default) = @$r;
		$name =~ s/`//g;
		next unless $name =~ /^authctx\./;
		$seen{$name} = 1;
		$default =~ s/`//g;
		$who =~ s/`//g;
		if (!$actual{$name})
		{
			push @bad, "$name: documented, but pg_settings has no such setting";
			next;
		}
		push @bad, "$name: default '$default' in the README, SHOW says '$actual{$name}[0]'"
		  if $default ne $actual{$name}[0];
		push @bad, "$name: set by '$who' in the README, the server says '$actual{$name}[1]'"
		  if $who ne $actual{$name}[1];
	}
	push @bad, map { "$_: in pg_settings, not in the README" } grep { !$seen{$_} } sort keys %actual;
	ok(!@bad, 'README: the settings table agrees with pg_settings (defaults, who may set and read)')
	  or diag(join "\n", @bad);
}

done_testing();
