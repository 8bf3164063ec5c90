# PGXN packaging: `make META.json` builds META.json from META.json.in with
# the control file's version, and it passes test/pgxn_meta.py (the PGXN
# Meta Spec 1.0.0 rules, plus: version = authctx.control's, files exist, a
# CHANGELOG.md section for the version).  The validator itself is shown to
# catch each kind of mistake, so that "ok" means something.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use File::Copy;

my $root = $ENV{TESTDIR};
my $python = '/usr/bin/python3';
my $check = "$root/test/pgxn_meta.py";

# A scratch copy of what the Makefile rule reads, so the tree is untouched.
my $dir = PostgreSQL::Test::Utils::tempdir;
copy("$root/$_", "$dir/$_") or die "copy $_: $!"
  for qw(Makefile META.json.in authctx.control CHANGELOG.md README.md);
my ($out, $err) = run_command([ 'make', '-s', '-C', $dir, 'META.json' ]);
ok(-f "$dir/META.json", 'make META.json builds it') or diag($err);

my ($version) = slurp_file("$root/authctx.control") =~ /^default_version\s*=\s*'([^']+)'/m;
my $meta = decode_json(slurp_file("$dir/META.json"));
is($meta->{version}, $version, 'its version is the control file\'s');
is($meta->{provides}{authctx}{version}, $version, 'and so is the extension\'s');
unlike(slurp_file("$dir/META.json"), qr/\@VERSION\@/, 'no placeholder left');

# Run the validator on a META.json; its exit status and output.
sub validate
{
	my ($file) = @_;
	my ($o, $e) = ('', '');
	IPC::Run::run([ $python, $check, $file, '--root', $dir ], '>', \$o, '2>', \$e);
	return ($? >> 8, $o . $e);
}

my ($rc, $msg) = validate("$dir/META.json");
is($rc, 0, 'META.json is valid against the PGXN Meta Spec 1.0.0');
is($msg, "ok\n", 'the validator says ok') or diag($msg);

# Each mutation must be refused, naming the problem.
my $json = JSON::PP->new->canonical->pretty;
my @cases = (
	[ 'required key missing', sub { delete $_[0]{abstract} }, qr/^abstract: required key missing/m ],
	[ 'name not a Term', sub { $_[0]{name} = 'a/b' }, qr/^name: .* not a Term/m ],
	[ 'version not semver', sub { $_[0]{version} = '0.2' }, qr/^version: .* not a semantic version/m ],
	[ 'unknown top-level key', sub { $_[0]{homepage} = 'x' }, qr/^homepage: not a key/m ],
	[ 'custom key accepted', sub { $_[0]{x_build} = 'pgxs' }, undef ],
	[ 'license not in the spec', sub { $_[0]{license} = 'GPL' }, qr/^license: .* not a license name/m ],
	[ 'meta-spec version', sub { $_[0]{'meta-spec'}{version} = '2.0.0' }, qr/^meta-spec\.version: must be "1\.0\.0"/m ],
	[ 'provides without file', sub { delete $_[0]{provides}{authctx}{file} }, qr/^provides\.authctx: required key 'file' missing/m ],
	[ 'bad version range', sub { $_[0]{prereqs}{runtime}{requires}{PostgreSQL} = '15' }, qr/^prereqs\.runtime\.requires\.PostgreSQL: .* not a version range/m ],
	[ 'unknown phase', sub { $_[0]{prereqs}{install} = {} }, qr/^prereqs: unknown key 'install'/m ],
	[ 'release_status', sub { $_[0]{release_status} = 'beta' }, qr/^release_status: must be one of/m ],
	[ 'tag with a slash', sub { $_[0]{tags} = ['a/b'] }, qr/^tags\[0\]: .* not a Tag/m ],
	[ 'version differs from the control file', sub { $_[0]{version} = '9.9.9' }, qr/^version: '9\.9\.9' differs from authctx\.control/m ],
	[ 'provided version differs', sub { $_[0]{provides}{authctx}{version} = '9.9.9' }, qr/^provides\.authctx\.version: '9\.9\.9' differs/m ],
	[ 'missing docfile', sub { $_[0]{provides}{authctx}{docfile} = 'nope.md' }, qr/^provides\.authctx\.docfile: 'nope\.md' does not exist/m ],
);
for my $c (@cases)
{
	my ($name, $mutate, $expect) = @$c;
	my $m = decode_json(slurp_file("$dir/META.json"));
	$mutate->($m);
	open my $fh, '>', "$dir/bad.json" or die;
	print $fh $json->encode($m);
	close $fh;
	my ($r, $o) = validate("$dir/bad.json");
	if (defined $expect)
	{
		ok($r == 1 && $o =~ $expect, "validator refuses: $name") or diag($o);
	}
	else
	{
		is($r, 0, "validator accepts: $name") or diag($o);
	}
}

# A key given twice is refused (JSON parsers would silently keep one).
my $text = slurp_file("$dir/META.json");
$text =~ s/"name": "authctx",/"name": "authctx", "name": "other",/ or die;
open my $fh, '>', "$dir/dup.json" or die;
print $fh $text;
close $fh;
($rc, $msg) = validate("$dir/dup.json");
ok($rc == 1 && $msg =~ /duplicate key 'name'/, 'validator refuses a duplicate key') or diag($msg);

# The changelog has a section for the version (checked through the validator).
my $cl = slurp_file("$dir/CHANGELOG.md");
$cl =~ s/^## \Q$version\E\b/## 0.0.0-gone/m or die 'no changelog section';
open $fh, '>', "$dir/CHANGELOG.md" or die;
print $fh $cl;
close $fh;
($rc, $msg) = validate("$dir/META.json");
ok($rc == 1 && $msg =~ /^CHANGELOG\.md: no section '## \Q$version\E'/m,
	'a version without a CHANGELOG section is refused') or diag($msg);

done_testing();
