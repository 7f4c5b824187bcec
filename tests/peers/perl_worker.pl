#!/usr/bin/perl
# A Perl Gearman::Worker serving FUNCTION by echoing the workload, until killed.
# Usage: perl perl_worker.pl PORT FUNCTION
use strict;
use warnings;
use Gearman::Worker;

my ($port, $function) = @ARGV;
my $worker = Gearman::Worker->new(job_servers => ["127.0.0.1:$port"]);
$worker->register_function($function => sub { return $_[0]->arg });
$worker->work while 1;
