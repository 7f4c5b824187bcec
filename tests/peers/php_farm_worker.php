<?php
// A Gearman worker on PHP's gearman extension (libgearman) with selectable behaviour, for the job-server
// interop tests and bench/server.py.
// Usage: php php_farm_worker.php HOST PORT FUNCTION COUNT [MODE] [TIMEOUT]
//   does COUNT jobs (0: until killed) and exits; MODE reverse (default), echo, fail, exception, status
//   (sends WORK_STATUS 1/2 and WORK_DATA "part" before completing), sleep (sleeps 3 s, then echoes);
//   TIMEOUT registers the function with CAN_DO_TIMEOUT (seconds).
[$_, $host, $port, $function, $count] = $argv;
$mode = $argv[5] ?? "reverse";
$timeout = (int)($argv[6] ?? 0);
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$handler = function (GearmanJob $job) use ($mode) {
    $workload = $job->workload();
    switch ($mode) {
        case "echo": return $workload;
        case "fail": $job->sendFail(); return null;
        case "exception": $job->sendException("boom"); return null;
        case "status": $job->sendStatus(1, 2); $job->sendData("part"); return strrev($workload);
        case "sleep": sleep(3); return $workload;
        default: return strrev($workload);
    }
};
$worker->addFunction($function, $handler, null, $timeout);
$done = 0;
while ($worker->work()) {
    if ($worker->returnCode() != GEARMAN_SUCCESS) { break; }
    $done++;
    if ((int)$count > 0 && $done >= (int)$count) { break; }
}
exit(0);
