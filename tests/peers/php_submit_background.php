<?php
// Queue COUNT background jobs through libgearman (PHP ext/gearman): addTaskBackground + runTasks, BATCH at a time.
// Usage: php php_submit_background.php PORT FUNCTION COUNT [WORKLOAD] [BATCH]
$port = (int)$argv[1];
$function = $argv[2];
$count = (int)$argv[3];
$workload = isset($argv[4]) ? $argv[4] : "x";
$batch = isset($argv[5]) ? (int)$argv[5] : 1000;
$client = new GearmanClient();
$client->addServer("127.0.0.1", $port);
for ($done = 0; $done < $count; $done += $batch) {
    for ($i = $done; $i < min($count, $done + $batch); $i++) {
        $client->addTaskBackground($function, $workload, null, "");
    }
    if (!$client->runTasks()) {
        fwrite(STDERR, "runTasks failed: " . $client->error() . "\n");
        exit(1);
    }
}
