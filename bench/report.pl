#!/usr/bin/perl
# bench/report.pl RESULTS.tsv: the markdown report of one bench/run.
#
# Every ratio is computed inside one round (the two runs were minutes apart
# at most, on the same machine state), then summarised over rounds as the
# median with the range [min-max].  Ratios across phases (cache on / off)
# are not computed: a restart separates them.
# Environment: BENCH_META (key<TAB>value lines), BENCH_SECS, BENCH_LARGEST,
# BENCH_SMALLEST.
use strict;
use warnings;

my $file = shift or die "usage: report.pl RESULTS.tsv\n";
my $secs = $ENV{BENCH_SECS} || 5;

# $run{phase}{size}{variant}{round} = { tps, k, pipe, clients, extra }
my (%run, %sizes, %rounds);
open my $fh, '<', $file or die "$file: $!\n";
my $hdr = <$fh>;
while (<$fh>) {
	chomp;
	my ($phase, $round, $size, $variant, $tps, $k, $pipe, $clients, $extra) = split /\t/, $_, -1;
	next if $phase eq 'W';
	$run{$phase}{$size}{$variant}{$round} = {
		tps => ($tps eq 'NA' ? undef : $tps), k => $k, pipe => $pipe,
		clients => $clients, extra => $extra // '' };
	$sizes{$size} = 1 unless $phase eq 'L';	# phase L has no session count
	$rounds{$phase}{$round} = 1;
}
close $fh;
my @sizes = sort { $a <=> $b } keys %sizes;
my $largest = $ENV{BENCH_LARGEST} || $sizes[-1];
my $smallest = $ENV{BENCH_SMALLEST} || $sizes[0];

sub label {
	my $n = shift;
	return ($n / 1000000) . 'M' if $n % 1000000 == 0;
	return ($n / 1000) . 'k' if $n % 1000 == 0;
	return $n;
}

sub median {
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	my $m = int(@v / 2);
	return @v % 2 ? $v[$m] : ($v[$m - 1] + $v[$m]) / 2;
}

# microseconds per request of one run (each client runs serially)
sub us {
	my $r = shift;
	return undef unless $r && defined $r->{tps} && $r->{tps} > 0 && $r->{k} > 0;
	return $r->{clients} * 1e6 / ($r->{tps} * $r->{k});
}

# the runs of one cell, by round (without creating the cell)
sub runs {
	my ($p, $s, $v) = @_;
	return {} unless exists $run{$p} && exists $run{$p}{$s} && exists $run{$p}{$s}{$v};
	return $run{$p}{$s}{$v};
}

# per-round values of f(roundA, roundB) for two cells of one phase
sub paired {
	my ($p, $sa, $va, $sb, $vb, $f) = @_;
	my ($ra, $rb) = (runs($p, $sa, $va), runs($p, $sb, $vb));
	my @out;
	for my $r (sort { $a <=> $b } keys %{ $rounds{$p} || {} }) {
		next unless $ra->{$r} && $rb->{$r};
		my $x = $f->($ra->{$r}, $rb->{$r});
		push @out, $x if defined $x;
	}
	return @out;
}

sub tps_ratio {
	my ($p, $sa, $va, $sb, $vb) = @_;
	return paired($p, $sa, $va, $sb, $vb, sub {
		my ($a, $b) = @_;
		return undef unless defined $a->{tps} && defined $b->{tps} && $b->{tps} > 0;
		return ($a->{tps} * $a->{k}) / ($b->{tps} * $b->{k});
	});
}

sub time_ratio {
	my ($p, $sa, $va, $sb, $vb) = @_;
	return paired($p, $sa, $va, $sb, $vb, sub {
		my ($ua, $ub) = (us($_[0]), us($_[1]));
		return undef unless defined $ua && defined $ub && $ub > 0;
		return $ua / $ub;
	});
}

sub fmt {
	my ($x, $d) = @_;
	return 'n/a' unless defined $x;
	return sprintf("%.${d}f", $x);
}

sub summary {
	my @v = @_;
	my $d = $_[0] && $_[0] eq 'digits3' ? do { shift @v; 3 } : 2;
	return 'n/a' unless @v;
	my @s = sort { $a <=> $b } @v;
	return sprintf("%.${d}f [%.${d}f-%.${d}f]", median(@v), $s[0], $s[-1]);
}

# median cache hit rate of a cell's runs, or n/a
sub hitrate {
	my $c = shift;
	my @h;
	for my $r (values %$c) {
		next unless $r->{extra} =~ /cache_hits=(\d+) cache_misses=(\d+)/;
		push @h, 100 * $1 / ($1 + $2) if $1 + $2 > 0;
	}
	return @h ? sprintf('%.0f%%', median(@h)) : 'n/a';
}

# median last-seen notes queued per request of a cell's runs, or n/a
sub seenrate {
	my $c = shift;
	my @h;
	for my $r (values %$c) {
		next unless defined $r->{tps} && $r->{tps} > 0 && $r->{extra} =~ /seen_notes=(-?\d+)/;
		push @h, $1 / ($r->{tps} * $r->{k} * $secs);
	}
	return @h ? sprintf('%.3f', median(@h)) : 'n/a';
}

my @targets;
sub target {
	my ($name, $goal, $cmp, $limit, @v) = @_;
	my $m = median(@v);
	my $verdict = 'n/a';
	if (defined $m) {
		my $ok = $cmp eq '>=' ? $m >= $limit : $cmp eq '<=' ? $m <= $limit
			: ($m >= $limit->[0] && $m <= $limit->[1]);
		$verdict = $ok ? 'met' : '**missed**';
	}
	# three decimals, so that a median just under a limit does not print as it
	push @targets, "| $name | $goal | " . summary('digits3', @v) . " | $verdict |";
}

my ($L, $S) = (label($largest), label($smallest));
my $have_b = exists $run{B};
my $have_d = exists $run{D};
# what phase A's cache was (BENCH_CACHE_A: "fit" or "default")
my $a_what = ($ENV{BENCH_CACHE_A} || '') eq 'fit' ? 'cache holding every session'
	: 'cache at its default size';

target("auth_begin / floor, TPS, $L sessions, cold keys (phase A: each session used less often than every 6 minutes, so most requests owe a last-seen write)", '>= 0.85', '>=', 0.85,
	tps_ratio('A', $largest, 'auth_cold', $largest, 'floor'));
target("auth_begin / hand-written SQL with a per-request last-seen UPDATE, TPS, $L sessions, cold keys (phase A)", '>= 1.5', '>=', 1.5,
	tps_ratio('A', $largest, 'auth_cold', $largest, 'handwritten_seen'));
if ($run{U}) {
	target("steady state (phase U): auth_begin / floor, TPS, $L sessions, cold keys, default settings", '>= 0.85', '>=', 0.85,
		tps_ratio('U', $largest, 'auth_cold', $largest, 'floor'));
	target("steady state (phase U): auth_begin / hand-written SQL with a per-request last-seen UPDATE, TPS, $L, cold keys", '>= 1.5', '>=', 1.5,
		tps_ratio('U', $largest, 'auth_cold', $largest, 'handwritten_seen'));
}
target("auth_begin / floor, TPS, $L sessions, hot keys (both on the same 1,000 keys)", '>= 0.92', '>=', 0.92,
	tps_ratio('A', $largest, 'auth_hot', $largest, 'floor_hot'));
if (%{ runs('A', $largest, 'auth_user_hot') }) {
	push @targets, "| (call form) SELECT (auth_begin(t)).user_id / floor, TPS, $L, hot keys | | "
		. summary(tps_ratio('A', $largest, 'auth_user_hot', $largest, 'floor_hot')) . ' | |';
}
if (%{ runs('A', $largest, 'floor4_hot') }) {
	push @targets, "| (diagnostic) auth_begin / four-value floor (user, tenant, role, session only), TPS, $L, hot keys | | "
		. summary(tps_ratio('A', $largest, 'auth_hot', $largest, 'floor4_hot')) . ' | |';
}
if ($have_d) {
	target("auth_begin / floor, TPS, $L, cold keys, cache at its default size (mostly misses)", '>= 0.85', '>=', 0.85,
		tps_ratio('D', $largest, 'auth_cold', $largest, 'floor'));
}
if ($have_b) {
	target("auth_begin / floor, TPS, $L, cold keys, cache off", '>= 0.85', '>=', 0.85,
		tps_ratio('B', $largest, 'auth_cold', $largest, 'floor'));
	target("auth_begin / floor, TPS, $L, hot keys, cache off", '>= 0.92', '>=', 0.92,
		tps_ratio('B', $largest, 'auth_hot', $largest, 'floor_hot'));
}
for my $p (qw(A D B)) {
	next unless %{ runs($p, $largest, 'auth_cold_noseen') };
	my $what = $p eq 'B' ? ', cache off' : $p eq 'D' ? ', cache at its default size' : '';
	push @targets, "| (diagnostic) auth_begin / floor, TPS, $L, cold keys, last-seen tracking off$what | | "
		. summary(tps_ratio($p, $largest, 'auth_cold_noseen', $largest, 'floor')) . ' | |';
	push @targets, "| (diagnostic) auth_begin / hand-written SQL, TPS, $L, cold keys, last-seen tracking off$what | | "
		. summary(tps_ratio($p, $largest, 'auth_cold_noseen', $largest, 'handwritten')) . ' | |';
}
push @targets, "| (diagnostic) auth_begin / hand-written SQL without any last-seen write, TPS, $L, cold keys | | "
	. summary(tps_ratio('A', $largest, 'auth_cold', $largest, 'handwritten')) . ' | |';
push @targets, "| (diagnostic) auth_begin / hand-written SQL with per-request last-seen, TPS, $L, hot keys | | "
	. summary(tps_ratio('A', $largest, 'auth_hot', $largest, 'handwritten_seen_hot')) . ' | |'
	if %{ runs('A', $largest, 'handwritten_seen_hot') };
target("auth_begin / hand-written SQL, TPS, $L sessions, hot keys (both on the same 1,000 keys)", '>= 1.25', '>=', 1.25,
	tps_ratio('A', $largest, 'auth_hot', $largest, 'handwritten_hot'));
if ($have_d) {
	target("auth_begin / hand-written SQL with per-request last-seen, TPS, $L, cold keys, cache at its default size (mostly misses)", '>= 1.5', '>=', 1.5,
		tps_ratio('D', $largest, 'auth_cold', $largest, 'handwritten_seen'));
}
if ($have_b) {
	target("auth_begin / hand-written SQL with per-request last-seen, TPS, $L, cold keys, cache off", '>= 1.5', '>=', 1.5,
		tps_ratio('B', $largest, 'auth_cold', $largest, 'handwritten_seen'));
	target("auth_begin / hand-written SQL, TPS, $L, hot keys, cache off", '>= 1.25', '>=', 1.25,
		tps_ratio('B', $largest, 'auth_hot', $largest, 'handwritten_hot'));
}
target("auth_begin request time, $L / $S sessions (cold keys)", '<= 1.2', '<=', 1.2,
	time_ratio('A', $largest, 'auth_cold', $smallest, 'auth_cold'));
target("auth_begin request time, $L / $S sessions, hot keys", '<= 1.2', '<=', 1.2,
	time_ratio('A', $largest, 'auth_hot', $smallest, 'auth_hot'));
if ($have_b) {
	target("auth_begin request time, $L / $S sessions, cold keys, cache off", '<= 1.2', '<=', 1.2,
		time_ratio('B', $largest, 'auth_cold', $smallest, 'auth_cold'));
}
target('RLS query / same query without RLS, TPS', '>= 0.97', '>=', 0.97,
	tps_ratio('A', $largest, 'rls_query', $largest, 'plain_query'));
target('per-row worst case: RLS seq scan / plain seq scan, time', '<= 1.15', '<=', 1.15,
	time_ratio('A', $largest, 'rls_seqscan', $largest, 'plain_seqscan'));
my %rates;
for my $p (qw(R R0)) {
	$rates{$_} = 1 for map { /^revoke_(\d+)$/ ? $1 : () } keys %{ exists $run{$p} && $run{$p}{$largest} || {} };
}
my @rates = sort { $a <=> $b } keys %rates;
if (%{ runs('A', $largest, 'rls_subselect_seqscan') }) {
	push @targets, "| (for comparison) policy with (SELECT authctx.tenant_id()): seq scan / plain seq scan, time | | "
		. summary(time_ratio('A', $largest, 'rls_subselect_seqscan', $largest, 'plain_seqscan')) . ' | |';
}
for my $p (qw(R R0)) {
	next unless $run{$p};
	my $what = $p eq 'R0' ? ', cache off' : '';
	for my $rate (@rates) {
		target("TPS under $rate revocations/s / no revocations$what", '>= 0.85', '>=', 0.85,
			tps_ratio($p, $largest, "revoke_$rate", $largest, 'revoke_none'));
	}
}
my ($stale, $inflight, $revoked) = (0, 0, 0);
my $rev_seen = 0;
for my $p (qw(R R0)) {
	for my $v (keys %{ exists $run{$p} && $run{$p}{$largest} || {} }) {
		for my $r (values %{ $run{$p}{$largest}{$v} }) {
			$rev_seen = 1;
			$stale += $1 if $r->{extra} =~ /stale=(\d+)/;
			$inflight += $1 if $r->{extra} =~ /inflight=(\d+)/;
			$revoked += $1 if $r->{extra} =~ /revoked=(\d+)/;
		}
	}
}
push @targets, "| stale accepts (revoked before auth_begin started, yet accepted) | 0 | "
	. ($rev_seen ? "$stale (of $revoked revocations; $inflight accepts raced an in-flight revocation)" : 'n/a')
	. ' | ' . (!$rev_seen ? 'n/a' : $stale == 0 ? 'met' : '**missed**') . ' |';
target('rejection time, unknown id / wrong secret', '0.8-1.25', 'in', [0.8, 1.25],
	time_ratio('A', $largest, 'reject_unknown', $largest, 'reject_wrong'));
sub srv_ratio {
	my ($p, $sa, $va, $sb, $vb) = @_;
	return paired($p, $sa, $va, $sb, $vb, sub {
		my ($a, $b) = @_;
		return defined $a->{tps} && defined $b->{tps} && $b->{tps} > 0 ? $a->{tps} / $b->{tps} : undef;
	});
}
for my $p (qw(S S0)) {
	next unless $run{$p};
	my $what = $p eq 'S0' ? ', cache off' : '';
	target("(server-side, per call) rejection time, unknown id / wrong secret$what", '0.8-1.25', 'in', [0.8, 1.25],
		srv_ratio($p, $largest, 'reject_unknown', $largest, 'reject_wrong'));
	# net of the benchmark's own token fetch, which also grows with the size
	my @net;
	my ($al, $fl, $as, $fs) = (runs($p, $largest, 'auth_cold'), runs($p, $largest, 'fetch'),
		runs($p, $smallest, 'auth_cold'), runs($p, $smallest, 'fetch'));
	for my $r (sort keys %{ $rounds{$p} }) {
		my @u = map { $_->{$r} ? $_->{$r}{tps} : undef } ($al, $fl, $as, $fs);
		next if grep { !defined } @u;
		next if $u[2] - $u[3] <= 0;
		push @net, ($u[0] - $u[1]) / ($u[2] - $u[3]);
	}
	target("(server-side, per call, minus the token fetch) auth_begin time, $L / $S sessions, cold keys$what",
		'<= 1.2', '<=', 1.2, @net);
}
if ($have_b) {
	target('rejection time, unknown id / wrong secret, cache off', '0.8-1.25', 'in', [0.8, 1.25],
		time_ratio('B', $largest, 'reject_unknown', $largest, 'reject_wrong'));
}

if (exists $run{L}) {
	target('login attempt time, unknown / known email, 4 parallel', '0.8-1.25', 'in', [0.8, 1.25],
		time_ratio('L', 0, 'login_unknown', 0, 'login_known'));
}

print "# authctx benchmark\n\n";
for my $line (split /\n/, $ENV{BENCH_META} || '') {
	my ($k, $v) = split /\t/, $line, 2;
	print "- $k: $v\n";
}
print <<'EOF';

Ratios are computed within each round (the runs compared were at most a few
minutes apart) and given as the median over rounds [min-max].  Request times
are wall-clock microseconds per request per client (clients x 1e6 / requests
per second); with 2 clients on 2 CPUs they include pgbench's own CPU time.

## Targets

| measure | goal | measured | verdict |
|---|---|---|---|
EOF
print "$_\n" for @targets;

sub cost_table {
	my ($p, $title, @variants) = @_;
	return unless $run{$p};
	print "\n## $title\n\n";
	print "| variant | pipelined | " . join(' | ', map { label($_) . ' us/req' } @sizes)
		. ' | ' . join(' | ', map { label($_) . ' / floor' } @sizes) . " |\n";
	print '|---|---|' . ('---|' x (2 * @sizes)) . "\n";
	for my $v (@variants) {
		my @cells;
		my $pipe = '';
		for my $n (@sizes) {
			my $c = runs($p, $n, $v);
			my @u = map { us($_) } values %$c;
			$pipe ||= join '', map { $_->{pipe} eq 'yes' ? "yes, $_->{k}/round trip" : 'no' } (values %$c)[0] // ();
			push @cells, fmt(median(@u), 1);
		}
		for my $n (@sizes) {
			# hot-key rows against the floor on the same hot keys, when measured
			my $base = ($v =~ /_hot$/ && %{ runs($p, $n, 'floor_hot') }) ? 'floor_hot' : 'floor';
			push @cells, $v eq $base ? '1' : summary(tps_ratio($p, $n, $v, $n, $base));
		}
		print "| $v | $pipe | " . join(' | ', @cells) . " |\n";
	}
	print "\nThe \"/ floor\" columns compare with the floor on the same keys: `*_hot` rows with\n"
		. "`floor_hot` where it was measured (largest size), with `floor` elsewhere.\n";
	my @hr;
	for my $v (grep { /^auth/ } @variants) {
		push @hr, "$v " . join(', ', map { label($_) . ' ' . hitrate(runs($p, $_, $v)) } @sizes);
	}
	print "\nShared cache hit rate (median of runs): " . join('; ', @hr) . "\n"
		if grep { !/n\/a/ } map { hitrate(runs($p, $_, 'auth_cold')) } @sizes;
	my @sn;
	for my $v (grep { /^auth/ } @variants) {
		my @cells = map { seenrate(runs($p, $_, $v)) } @sizes;
		push @sn, "$v " . join(', ', map { label($sizes[$_]) . ' ' . $cells[$_] } 0 .. $#sizes)
			if grep { $_ ne 'n/a' } @cells;
	}
	print "\nLast-seen notes queued per request (median of runs; each is a row the last-seen worker writes): "
		. join('; ', @sn) . "\n" if @sn;
}

cost_table('A', "Request cost by variant ($a_what)",
	qw(floor handwritten handwritten_seen json_claims auth_cold auth_hot auth_user_hot floor_hot floor4_hot handwritten_hot handwritten_seen_hot auth_cold_noseen));
cost_table('U', "Steady state of last-seen times (phase U, $a_what, after the warm-up)",
	qw(floor handwritten_seen auth_cold));
cost_table('D', 'Request cost with authctx.cache_size at its default (separate phase, after a restart)',
	qw(floor handwritten handwritten_seen auth_cold auth_cold_noseen));
cost_table('B', 'Request cost with authctx.cache_size = 0 (separate phase, after a restart)',
	qw(floor handwritten handwritten_seen auth_cold auth_hot floor_hot handwritten_hot auth_cold_noseen));

for my $p (qw(S S0)) {
	next unless $run{$p};
	printf "\n## Server-side microseconds per call%s\n\n", $p eq 'S0' ? ', authctx.cache_size = 0' : ($have_b ? ", $a_what" : '');
	print "The variant's statement run in a plpgsql loop inside one transaction\n"
		. "(bench.percall): no client, no round trip, no BEGIN/COMMIT.  Each call\n"
		. "includes the token fetch (`fetch`).  Median over rounds [min-max].\n\n";
	print "| statement | " . join(' | ', map { label($_) } @sizes) . " |\n";
	print '|---|' . ('---|' x @sizes) . "\n";
	for my $v (qw(fetch floor handwritten handwritten_seen json_claims auth_cold fetch_hot floor_hot handwritten_hot auth_hot auth_cold_noseen reject_unknown reject_wrong)) {
		my @cells;
		for my $n (@sizes) {
			my @x = grep { defined } map { $_->{tps} } values %{ runs($p, $n, $v) };
			push @cells, @x ? summary(@x) : '';
		}
		next unless grep { $_ ne '' } @cells;
		print "| $v | " . join(' | ', @cells) . " |\n";
	}
}

if ($run{A}) {
	print "\n## At $L sessions: rejection, RLS\n\n";
	print "| variant | pipelined | requests/s | us/req | cache hit rate |"
		. ($have_b ? " cache off: requests/s | cache off: us/req |" : '') . "\n";
	print "|---|---|---|---|---|" . ($have_b ? '---|---|' : '') . "\n";
	for my $v (qw(reject_unknown reject_wrong rls_query plain_query rls_seqscan plain_seqscan rls_subselect_seqscan)) {
		my $c = runs('A', $largest, $v);
		next unless %$c;
		my ($any) = values %$c;
		my @rps = map { defined $_->{tps} ? $_->{tps} * $_->{k} : undef } values %$c;
		printf "| %s | %s | %s | %s | %s |", $v, ($any->{pipe} eq 'yes' ? "yes, $any->{k}/round trip" : 'no'),
			fmt(median(@rps), 0), fmt(median(map { us($_) } values %$c), 1), hitrate($c);
		if ($have_b) {
			my $b = runs('B', $largest, $v);
			my @brps = map { defined $_->{tps} ? $_->{tps} * $_->{k} : undef } values %$b;
			printf " %s | %s |", fmt(median(@brps), 0), fmt(median(map { us($_) } values %$b), 1);
		}
		print "\n";
	}
}

if ($run{A} && %{ runs('A', $largest, 'skew_rls_small') }) {
	print "\n## Skewed tenants: RLS with a tenant unknown at plan time\n\n";
	print "200,000 rows; tenant 1 owns 198,020 (big), tenant 2 owns 20 (small).  Each request:\n"
		. "auth_begin as a session of that tenant, then `SELECT count(*), sum(amount)` of the\n"
		. "tenant's rows.  us/req over the wire, 4 requests per round trip; \"/ literal\": time\n"
		. "ratio to the same tenant's query with `WHERE tenant_id = '<literal>'` on the\n"
		. "table without RLS, within each round.\n\n";
	print "| table | small: us/req | small / literal | big: us/req | big / literal |\n|---|---|---|---|---|\n";
	my %what = (plain => 'no RLS, `WHERE tenant_id = <literal>`', rls => 'isolated (policy), index on tenant_id',
		part => 'isolated, LIST-partitioned (big tenant / default)', ios => 'isolated, index (tenant_id) INCLUDE (amount)');
	for my $t (qw(plain rls part ios)) {
		my @cells;
		for my $sz (qw(small big)) {
			my $c = runs('A', $largest, "skew_${t}_$sz");
			push @cells, fmt(median(map { us($_) } values %$c), 1),
				$t eq 'plain' ? '1' : summary(time_ratio('A', $largest, "skew_${t}_$sz", $largest, "skew_plain_$sz"));
		}
		print "| skew_$t: $what{$t} | " . join(' | ', @cells) . " |\n";
	}
	if ($ENV{BENCH_PLANS} && open my $pf, '<', $ENV{BENCH_PLANS}) {
		local $/;
		my $plans = <$pf>;
		close $pf;
		print "\nPlans (EXPLAIN ANALYZE as bench_app, costs and timing off):\n\n```\n$plans```\n";
	}
}

for my $p (qw(R R0)) {
	next unless $run{$p};
	printf "\n## Revocation (at %s sessions%s)\n\n", $L,
		$p eq 'R0' ? ', authctx.cache_size = 0' : ($have_b ? ", $a_what" : '');
	print "| revoker | requests/s | / none | revocations/s achieved | stale accepts | in-flight accepts | cache hit rate |\n";
	print "|---|---|---|---|---|---|---|\n";
	my @noop = map { /^revoke_noop(\d+)$/ ? $1 : () } keys %{ $run{$p}{$largest} };
	for my $v ('revoke_none', (map { "revoke_$_" } @rates), (map { "revoke_noop$_" } @noop)) {
		my $c = runs($p, $largest, $v);
		next unless %$c;
		my @rps = map { defined $_->{tps} ? $_->{tps} * $_->{k} : undef } values %$c;
		my ($st, $in, @rv) = (0, 0);
		for my $r (values %$c) {
			$st += $1 if $r->{extra} =~ /stale=(\d+)/;
			$in += $1 if $r->{extra} =~ /inflight=(\d+)/;
			push @rv, $1 / $secs if $r->{extra} =~ /revoked=(\d+)/;
		}
		(my $name = $v) =~ s/^revoke_//;
		$name = $name eq 'none' ? 'none'
			: $name =~ /^noop(\d+)/ ? "$1/s load only (no revocation)" : "$name/s";
		printf "| %s | %s | %s | %s | %d | %d | %s |\n", $name, fmt(median(@rps), 0),
			($v eq 'revoke_none' ? '1' : summary(tps_ratio($p, $largest, $v, $largest, 'revoke_none'))),
			($v =~ /noop/ ? '0' : fmt(median(@rv), 0)), $st, $in, hitrate($c);
	}
}

if ($run{L}) {
	print "\n## Login attempts, 4 parallel clients, wrong password\n\n";
	print "Attempts for one email run one at a time (the per-account lock, taken for\n"
		. "unknown emails too), so the time of an attempt is the same whether the\n"
		. "email has an account or not.  Milliseconds per attempt per client.\n\n";
	print "| variant | attempts/s | ms/attempt | / login_known |\n|---|---|---|---|\n";
	for my $v (qw(login_known login_unknown)) {
		my $c = runs('L', 0, $v);
		next unless %$c;
		my @rps = map { defined $_->{tps} ? $_->{tps} * $_->{k} : undef } values %$c;
		my @ms = map { defined $_ ? $_ / 1000 : undef } map { us($_) } values %$c;
		printf "| %s | %s | %s | %s |\n", $v, fmt(median(@rps), 1), fmt(median(@ms), 1),
			$v eq 'login_known' ? '1' : summary(time_ratio('L', 0, $v, 0, 'login_known'));
	}
}

my @failed;
for my $p (sort keys %run) {
	for my $n (sort { $a <=> $b } keys %{ $run{$p} }) {
		for my $v (sort keys %{ $run{$p}{$n} }) {
			my @f = grep { !defined $run{$p}{$n}{$v}{$_}{tps} } keys %{ $run{$p}{$n}{$v} };
			push @failed, "$p/" . label($n) . "/$v (rounds " . join(',', sort @f) . ')' if @f;
		}
	}
}
print "\nFailed runs (left out): " . join('; ', @failed) . "\n" if @failed;
