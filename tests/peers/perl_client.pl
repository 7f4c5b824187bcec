#!/usr/bin/perl
# A Gearman client on Perl's Gearman::Client, for interop tests and bench/server.py.
# Usage: perl perl_client.pl HOST PORT MODE FUNCTION COUNT PAYLOAD_BYTES [PAYLOAD]
#   MODE one | seq | pipe | bg (as php_client.php), jobs (get_job_server_jobs), clients (get_job_server_clients),
#        status (submit one background job, print its status)
# Prints one JSON line: {"jobs": N, "seconds": T, "result": ..., "failed": F}.
use strict;
use warnings;
use Gearman::Client;
use Time::HiRes qw(time);
use JSON::PP;

my ($host, $port, $mode, $function, $count, $size, $payload) = @ARGV;
$payload //= "x" x ($size // 0);
my $client = Gearman::Client->new(job_servers => ["$host:$port"]);
my ($result, $failed) = (undef, 0);
my $start = time;
if ($mode eq "one") {
    my $ref = $client->do_task($function, $payload);
    if (defined $ref) { $result = $$ref } else { $failed = 1 }
    $count = 1;
} elsif ($mode eq "seq") {
    for (1 .. $count) { defined $client->do_task($function, $payload) or $failed++ }
} elsif ($mode eq "pipe" or $mode eq "bg") {
    my $set = $client->new_task_set;
    my $done = 0;
    for (1 .. $count) {
        if ($mode eq "bg") {
            $client->dispatch_background($function, $payload) or $failed++;
        } else {
            $set->add_task($function, $payload, { on_complete => sub { $done++ }, on_fail => sub { $failed++ } });
        }
    }
    $set->wait(timeout => 120) if $mode eq "pipe";
    $result = $done;
} elsif ($mode eq "status") {
    my $handle = $client->dispatch_background($function, $payload);
    my $status = $client->get_status($handle);
    $result = [$handle, $status->known ? 1 : 0, $status->running ? 1 : 0];
    $count = 1;
} elsif ($mode eq "jobs") {
    $result = [map { { %$_ } } $client->get_job_server_jobs];
    $count = 0;
} elsif ($mode eq "clients") {
    $result = [$client->get_job_server_clients];
    $count = 0;
} else {
    die "unknown mode $mode\n";
}
my $seconds = time - $start;
print JSON::PP->new->canonical->allow_blessed->convert_blessed->encode(
    { jobs => $count + 0, seconds => $seconds, result => $result, failed => $failed }), "\n";
exit($failed ? 1 : 0);
