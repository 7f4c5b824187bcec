"""What users of arq and the seeds expect of both workers, against both servers: codecs, drain-and-exit (burst),
``grab_one``, hooks, ``stop()`` from another thread, and polling a sleeping connection for epoch jobs."""

from __future__ import annotations

import json

from gearworks import Client, JSONCodec
from gearworks.worker import WorkerJob
from tests.integration.worker.conftest import WorkerFactory
from tests.servers import ServerProcess


def test_a_codec_decodes_workloads_and_encodes_results(
    job_server: ServerProcess, worker_factory: WorkerFactory
) -> None:
    running = worker_factory(job_server.address, codec=JSONCodec())

    @running.worker.register("total")
    def total(job: WorkerJob) -> object:
        return {"sum": sum(job.value["numbers"]), "raw": len(job.workload)}

    running.start()
    with Client(job_server.address) as client:
        result = client.do("total", json.dumps({"numbers": [1, 2, 3]}), timeout=10)
    assert json.loads(result) == {"sum": 6, "raw": 22}
