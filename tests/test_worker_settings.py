"""What the worker reads from its environment and flags: namespace (envconfig), tuning."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from onward.starter.devserver import DevServer
from onward.tuning import DEV_SERVER_DYNAMIC_CONFIG, MALLOC_ARENAS, WorkerTuning
from onward.worker import WorkerSettings, build_worker, parse_args

PROFILE = """
[profile.cloud]
address = "my-ns.a1b2c.tmprl.cloud:7233"
namespace = "from-profile"
"""


def test_the_namespace_of_the_chosen_profile_is_used(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(PROFILE)
    env = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "cloud"}
    assert WorkerSettings.from_env(env).namespace == "from-profile"
    env["TEMPORAL_NAMESPACE"] = "from-env"
    assert WorkerSettings.from_env(env).namespace == "from-env"


def test_default_namespace_without_settings(tmp_path: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml")}
    assert WorkerSettings.from_env(env).namespace == "default"


def test_tuning_defaults_then_env_then_flags(tmp_path: Path) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"),
        "ONWARD_MAX_CONCURRENT_WORKFLOW_TASKS": "50",
        "ONWARD_MAX_CACHED_WORKFLOWS": "300",
        "ONWARD_STICKY_TIMEOUT": "2.5",
        "ONWARD_SHUTDOWN_TIMEOUT": "30",
    }
    argv = ["--max-cached-workflows", "400", "--sticky-timeout", "3", "--shutdown-timeout", "2.5"]
    settings, _ = parse_args(argv, env)
    assert settings.tuning == WorkerTuning(
        max_concurrent_workflow_tasks=50,  # from the environment
        max_cached_workflows=400,  # the flag wins
        sticky_timeout_s=3.0,
        shutdown_timeout_s=2.5,
    )
    assert settings.tuning.worker_options()["graceful_shutdown_timeout"] == timedelta(seconds=2.5)
    settings, _ = parse_args(
        [
            "--max-concurrent-activities",
            "7",
            "--max-concurrent-local-activities",
            "8",
            "--max-concurrent-workflow-tasks",
            "9",
        ],
        {"TEMPORAL_CONFIG_FILE": env["TEMPORAL_CONFIG_FILE"]},
    )
    assert settings.tuning == WorkerTuning(
        max_concurrent_activities=7,
        max_concurrent_local_activities=8,
        max_concurrent_workflow_tasks=9,
    )


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--max-cached-workflows", "0"], {}, "--max-cached-workflows"),
        ([], {"ONWARD_STICKY_TIMEOUT": "soon"}, "ONWARD_STICKY_TIMEOUT"),
        ([], {"ONWARD_MAX_CONCURRENT_ACTIVITIES": "-1"}, "ONWARD_MAX_CONCURRENT_ACTIVITIES"),
    ],
)
def test_a_bad_tuning_value_stops_the_start_naming_it(
    argv: list[str],
    env: dict[str, str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"), **env}
    with pytest.raises(SystemExit) as exit:
        parse_args(argv, env)
    assert exit.value.code == 2
    assert named in capsys.readouterr().err


async def test_the_tuning_reaches_the_worker(client: Client, tmp_path: Path) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"),
        "ONWARD_WORKSPACE": str(tmp_path / "ws"),
        "ONWARD_STORE": str(tmp_path / "store"),
        "ONWARD_MAX_CONCURRENT_LOCAL_ACTIVITIES": "11",
    }
    settings, _ = parse_args(
        [
            "--task-queue",
            f"tq-{uuid.uuid4()}",
            "--max-concurrent-workflow-tasks",
            "12",
            "--max-concurrent-activities",
            "13",
            "--max-cached-workflows",
            "14",
            "--sticky-timeout",
            "1.5",
        ],
        env,
    )
    config = build_worker(client, settings).config(active_config=True)
    assert config.get("max_concurrent_workflow_tasks") == 12
    assert config.get("max_concurrent_activities") == 13
    assert config.get("max_concurrent_local_activities") == 11
    assert config.get("max_cached_workflows") == 14
    assert config.get("sticky_queue_schedule_to_start_timeout") == timedelta(seconds=1.5)
    # Onward's modules are imported once per worker, not once per run, by the sandbox.
    runner = config.get("workflow_runner")
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert "onward" in runner.restrictions.passthrough_modules
    # A caller's own option still wins over the settings.
    settings = replace(settings, task_queue=f"tq-{uuid.uuid4()}")
    config = build_worker(client, settings, max_cached_workflows=5).config(active_config=True)
    assert config.get("max_cached_workflows") == 5


def test_the_embedded_dev_server_fires_timers_without_the_one_second_floor(tmp_path: Path) -> None:
    """``onward dev`` and ``temporal-dev.yml`` both set the timer shift (see onward.tuning)."""
    command = DevServer.recorded(tmp_path, None, None).command()
    assert DEV_SERVER_DYNAMIC_CONFIG == {"history.timerProcessorMaxTimeShift": "100ms"}
    index = command.index("--dynamic-config-value")
    assert command[index + 1] == 'history.timerProcessorMaxTimeShift="100ms"'
    compose_config = Path(__file__).parent.parent / "deploy/temporal/dynamicconfig/onward.yaml"
    text = compose_config.read_text()
    assert "history.timerProcessorMaxTimeShift:\n  - value: 100ms" in text


def _flag_values(tmp_path: Path, flag: str) -> list[str]:
    """The values ``onward dev``'s server command gives ``flag``, in order."""
    command = DevServer.recorded(tmp_path, None, None).command()
    return [command[i + 1] for i, arg in enumerate(command) if arg == flag]


def test_the_embedded_dev_server_caches_search_attributes_and_has_onwards(tmp_path: Path) -> None:
    """Its search-attribute cache is on, as on a cluster, with Onward's registered at start."""
    values = _flag_values(tmp_path, "--dynamic-config-value")
    assert "system.forceSearchAttributesCacheRefreshOnRead=false" in values
    assert _flag_values(tmp_path, "--search-attribute") == [
        "OnwardStatus=Keyword",
        "OnwardModel=Keyword",
        "OnwardTenant=Keyword",
        "OnwardSteps=Int",
        "OnwardTokens=Int",
        "OnwardCostUsd=Double",
    ]


def test_the_embedded_dev_server_reads_its_one_shards_task_queue_often(tmp_path: Path) -> None:
    """At Temporal's 20 reads a second every step waited about 35 ms (see onward.tuning)."""
    values = _flag_values(tmp_path, "--dynamic-config-value")
    assert "history.transferProcessorMaxPollRPS=200" in values


# Sixteen threads allocate at once and stay alive; glibc's malloc_stats lists the arenas.
ARENA_PROBE = """
import ctypes, os, sys, threading
from onward.tuning import limit_malloc_arenas
if sys.argv[1] == "limit":
    print("limited to", limit_malloc_arenas(os.environ), file=sys.stderr)
barrier = threading.Barrier(17)
kept = []
def work():
    kept.append(bytearray(8192))  # past pymalloc's small objects: glibc malloc, in this thread
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(16)]
for thread in threads:
    thread.start()
barrier.wait()
ctypes.CDLL(None).malloc_stats()
barrier.wait()
"""


def _arenas(mode: str, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", ARENA_PROBE, mode],
        env=environ, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stderr.count("Arena "), done.stderr


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_the_worker_keeps_malloc_to_two_arenas_unless_the_operator_chose() -> None:
    unlimited, _ = _arenas("none")
    assert unlimited > MALLOC_ARENAS  # threads that allocate at once spread over arenas
    limited, stderr = _arenas("limit")
    assert limited == MALLOC_ARENAS, stderr
    assert f"limited to {MALLOC_ARENAS}" in stderr
    chosen, stderr = _arenas("limit", MALLOC_ARENA_MAX="3")
    assert chosen == 3, stderr  # the operator's value stands
    assert "limited to None" in stderr
