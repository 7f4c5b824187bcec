"""The behaviour suite's server-independent tests, against gearworks' own job server (``gearworks serve``).

The tests are the ones of test_behaviour; only the ``gearmand`` fixture differs: here it is our server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.client.test_behaviour import (
    test_background_job_status_by_handle_and_unique,
    test_background_jobs_get_distinct_default_uniques,
    test_close_fails_pending_jobs_and_nothing_hangs,
    test_do_returns_the_result_and_reports_every_event,
    test_failed_job_raises_and_retry_count_resubmits,
    test_four_mib_payload_with_nul_bytes_round_trips,
    test_job_timeout_and_task_set_timeout,
    test_many_pipelined_background_submissions,
    test_priorities_order_queued_jobs,
    test_reconnect_after_gearmand_restart_resends_options,
    test_task_set_runs_many_jobs_with_per_task_callbacks,
    test_unique_key_coalesces_foreground_jobs,
    test_worker_exception_reaches_clients_that_asked_for_exceptions,
)
from tests.servers import ServerProcess, gearworks_process

__all__ = [
    "test_background_job_status_by_handle_and_unique",
    "test_background_jobs_get_distinct_default_uniques",
    "test_close_fails_pending_jobs_and_nothing_hangs",
    "test_do_returns_the_result_and_reports_every_event",
    "test_failed_job_raises_and_retry_count_resubmits",
    "test_four_mib_payload_with_nul_bytes_round_trips",
    "test_job_timeout_and_task_set_timeout",
    "test_many_pipelined_background_submissions",
    "test_priorities_order_queued_jobs",
    "test_reconnect_after_gearmand_restart_resends_options",
    "test_task_set_runs_many_jobs_with_per_task_callbacks",
    "test_unique_key_coalesces_foreground_jobs",
    "test_worker_exception_reaches_clients_that_asked_for_exceptions",
]


@pytest.fixture
def gearmand() -> Iterator[ServerProcess]:
    """gearworks' own server on a free loopback port, standing in for C gearmand in the imported tests."""
    server = gearworks_process()
    try:
        yield server.start()
    finally:
        server.close()
