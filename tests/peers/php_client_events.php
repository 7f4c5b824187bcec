<?php
// A libgearman client (PHP ext/gearman) that submits foreground jobs and prints every event it receives as one
// JSON line: {"event": "data"|"warning"|"status"|"complete"|"fail"|"exception", "handle": ..., "data": ...}.
// Usage: php php_client_events.php PORT FUNCTION WORKLOAD [COUNT]
// COUNT jobs (default 1) are submitted together (addTask + runTasks), so they run concurrently given workers; with
// COUNT > 1 job i's workload is WORKLOAD-i. pecl-gearman 2.x asks every server for "exceptions" on addServer.
$port = (int)$argv[1];
$function = $argv[2];
$workload = $argv[3];
$count = isset($argv[4]) ? (int)$argv[4] : 1;
$client = new GearmanClient();
$client->addServer("127.0.0.1", $port);
$client->setTimeout(60000);
$emit = function ($event, $task, $data = null) {
    echo json_encode(["event" => $event, "handle" => $task->jobHandle(), "data" => $data,
                      "unique" => $task->unique()]), "\n";
};
$client->setDataCallback(function ($task) use ($emit) { $emit("data", $task, $task->data()); });
$client->setWarningCallback(function ($task) use ($emit) { $emit("warning", $task, $task->data()); });
$client->setStatusCallback(function ($task) use ($emit) {
    $emit("status", $task, [$task->taskNumerator(), $task->taskDenominator()]);
});
$client->setCompleteCallback(function ($task) use ($emit) { $emit("complete", $task, $task->data()); });
$client->setFailCallback(function ($task) use ($emit) { $emit("fail", $task); });
$client->setExceptionCallback(function ($task) use ($emit) { $emit("exception", $task, $task->data()); });
for ($i = 0; $i < $count; $i++) {
    $client->addTask($function, $count > 1 ? "$workload-$i" : $workload, null, "u-$function-$i-" . getmypid());
}
if (!$client->runTasks()) {
    fwrite(STDERR, "runTasks failed: " . $client->error() . "\n");
    exit(1);
}
