<?php
// A libgearman worker (PHP ext/gearman): serves FUNCTION by echoing the workload, until killed.
// Usage: php php_worker.php PORT FUNCTION
$worker = new GearmanWorker();
$worker->addServer("127.0.0.1", (int)$argv[1]);
$worker->addFunction($argv[2], function ($job) { return $job->workload(); });
while ($worker->work() || $worker->returnCode() == GEARMAN_IO_WAIT || $worker->returnCode() == GEARMAN_NO_JOBS) {
}
fwrite(STDERR, "worker stopped: " . $worker->error() . "\n");
exit(1);
