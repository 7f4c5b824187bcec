#!/usr/bin/perl
# A Gearman worker on Perl's Gearman::Worker with selectable behaviour, for the job-server interop tests and
# bench/server.py.
# Usage: perl perl_farm_worker.pl HOST PORT FUNCTION COUNT [MODE] [TIMEOUT]
#   does COUNT jobs (0: until killed); MODE reverse (default), echo, fail, status, sleep (3 s then echo),
#   dies (dies on the workload "die", else reverse);
#   TIMEOUT registers the function with CAN_DO_TIMEOUT (seconds).
use strict;
use warnings;
use Gearman::Worker;

my ($host, $port, $function, $count, $mode, $timeout) = @ARGV;
$mode //= "reverse";
my $worker = Gearman::Worker->new(job_servers => ["$host:$port"]);
my $handler = sub {
    my $job = shift;
    my $workload = $job->arg;
    return $workload if $mode eq "echo";
    die "failing on purpose\n" if $mode eq "fail" or ($mode eq "dies" and $workload eq "die");
    if ($mode eq "status") { $job->set_status(1, 2); return scalar reverse $workload }
    if ($mode eq "sleep") { sleep 3; return $workload }
    return scalar reverse $workload;
};
if ($timeout) { $worker->register_function($function, $timeout, $handler) }
else { $worker->register_function($function, $handler) }
my $done = 0;
$worker->work(
    stop_if => sub { $count > 0 && $done >= $count },
    on_complete => sub { $done++ },
    on_fail => sub { $done++ },
);
exit 0;
