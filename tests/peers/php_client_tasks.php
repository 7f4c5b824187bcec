<?php
// A libgearman client (PHP ext/gearman) that runs COUNT foreground tasks as one task set (addTask + runTasks) and
// prints the seconds runTasks took.
// Usage: php php_client_tasks.php PORT FUNCTION COUNT
$client = new GearmanClient();
$client->addServer("127.0.0.1", (int)$argv[1]);
$client->setTimeout(120000);
$count = (int)$argv[3];
$completed = 0;
$client->setCompleteCallback(function ($task) use (&$completed) { $completed++; });
for ($i = 0; $i < $count; $i++) {
    $client->addTask($argv[2], "x", null, "");
}
$start = microtime(true);
if (!$client->runTasks() || $completed != $count) {
    fwrite(STDERR, "runTasks failed after $completed of $count: " . $client->error() . "\n");
    exit(1);
}
printf("%.6f\n", microtime(true) - $start);
