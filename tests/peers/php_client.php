<?php
// A Gearman client on PHP's gearman extension (libgearman), for interop tests and bench/server.py.
// Usage: php php_client.php HOST PORT MODE FUNCTION COUNT PAYLOAD_BYTES [PAYLOAD]
//   MODE one   submit one foreground job with PAYLOAD (or PAYLOAD_BYTES of "x"), print the result
//        seq   COUNT foreground jobs one after the other
//        pipe  COUNT foreground jobs submitted together (addTask + runTasks)
//        bg    COUNT background jobs submitted together (addTaskBackground + runTasks)
//        status submit one background job, print JSON of jobStatus() for its handle
// Prints one JSON line: {"jobs": N, "seconds": T, "result": "..."}; exits 1 on a failed job.
[$_, $host, $port, $mode, $function, $count, $size] = array_slice($argv, 0, 7) + array_fill(0, 7, null);
$count = (int)$count;
$payload = $argv[7] ?? str_repeat("x", (int)$size);
$client = new GearmanClient();
$client->addServer($host, (int)$port);
$client->setTimeout(60000);
$result = null;
$failed = 0;
$start = microtime(true);
switch ($mode) {
    case "one":
        $result = $client->doNormal($function, $payload);
        if ($client->returnCode() != GEARMAN_SUCCESS) {
            $failed = 1;
            $result = "code " . $client->returnCode() . ": " . $client->error();
        }
        $count = 1;
        break;
    case "seq":
        for ($i = 0; $i < $count; $i++) {
            $client->doNormal($function, $payload);
            if ($client->returnCode() != GEARMAN_SUCCESS) { $failed++; }
        }
        break;
    case "pipe":
        $done = 0;
        $client->setCompleteCallback(function ($task) use (&$done) { $done++; });
        $client->setFailCallback(function ($task) use (&$failed) { $failed++; });
        for ($i = 0; $i < $count; $i++) { $client->addTask($function, $payload); }
        $client->runTasks();
        $result = $done;
        break;
    case "bg":
        for ($i = 0; $i < $count; $i++) { $client->addTaskBackground($function, $payload); }
        $client->runTasks();
        break;
    case "status":
        $handle = $client->doBackground($function, $payload);
        $result = [$handle, $client->jobStatus($handle)];
        $count = 1;
        break;
    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}
$seconds = microtime(true) - $start;
echo json_encode(["jobs" => $count, "seconds" => $seconds, "result" => $result, "failed" => $failed]), "\n";
exit($failed ? 1 : 0);
