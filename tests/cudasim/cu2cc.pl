#!/usr/bin/perl
# cu2cc.pl: kernels/X.cu -> C++ for the CPU emulator (see cudasim.h).
#   k<<<cfg>>>(args)            -> sim::launch(sim::cfg(cfg), id, "k", [=]() { k(args); })
#   extern __shared__ T s[];    -> T *s = (T *)sim::shared_dynamic();
#   __shared__ T a[N], b[M];    -> one per-block buffer per name
#   expf(x), exp2f(x)           -> sim::dev_expf(x), sim::dev_exp2f(x)
#   __launch_bounds__(n) k(...) { -> k(...) { sim::launch_bounds(n);
# Line numbers are kept (#line), so compiler errors and cudasim's messages
# point into the .cu file.
# Usage: perl tests/cudasim/cu2cc.pl kernels/X.cu > X.cc
use strict;
use warnings;

my $path = shift or die "usage: cu2cc.pl FILE.cu\n";
open my $fh, '<', $path or die "cu2cc.pl: cannot open '$path': $!\n";
my $s = do { local $/; <$fh> };
close $fh;

# dynamic shared memory
$s =~ s{extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w ]*?)\s+(\w+)\s*\[\s*\]\s*;}
       {$1 *$2 = ($1 *)sim::shared_dynamic();}g;

# static shared memory
$s =~ s{__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w ]*?)\s+((?:\w+\s*\[[^\]]+\]\s*,?\s*)+);}{
	my ($t, $list) = ($1, $2);
	my @out;
	while ($list =~ /(\w+)\s*\[([^\]]+)\]/g) {
		push @out, "static char sim_key_$1; $t *$1 = ($t *)sim::shared_static(&sim_key_$1, sizeof($t) * ($2));";
	}
	join(' ', @out);
}ge;
die "cu2cc.pl: $path: a __shared__ declaration this script does not know\n" if $s =~ /__shared__/;

# __launch_bounds__(max[, min]) f(...) { -> f(...) { sim::launch_bounds(max[, min]);
# (nvcc fits the registers to max threads; a bigger launch fails on the device)
$s =~ s%__launch_bounds__\s*(\((?:[^()]++|(?1))*\))([^{;]*?)\{%$2\{ sim::launch_bounds$1;%gs;

# the device's expf and exp2f (their error bound, see cudasim.h)
$s =~ s{\b(expf|exp2f)\s*\(}{sim::dev_$1(}g;

# launches
my $n = 0;
$s =~ s{(\b[A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*(?<args>\((?:[^()]++|(?&args))*+\))}{
	my ($k, $cfg, $args) = ($1, $2, $+{args});
	$n++;
	my $id = $k =~ /</ ? "reinterpret_cast<const void *>(&$k)" : "nullptr";
	"sim::launch(sim::cfg($cfg), $id, \"$k\", [=]() { $k$args; })";
}gse;
die "cu2cc.pl: $path: a launch this script does not know\n" if $s =~ /<<</;

print "#line 1 \"$path\"\n", $s;
