"""temporal-dev.yml, checked without a Docker engine.

No Docker engine runs on these machines, and Debian's docker-compose 1.29 is
too old for the current Compose specification. So the file is validated
against the specification's JSON schema (vendored in check-jsonschema: no
network), then against the rules in ``compose_rules`` that the schema cannot
express; the namespace job runs for real against the dev server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pytest
from compose_rules import (
    dockerfile_sources,
    environment,
    host_of,
    load,
    mounted_files,
    problems,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from conftest import REPO, temporal_cli

STACK = REPO / "temporal-dev.yml"

# The stack before this test existed: auto-setup, a tctl healthcheck, the dev server's port.
RETIRED_STACK = textwrap.dedent(
    """\
    name: onward-temporal
    services:
      postgresql:
        image: postgres:16
      temporal:
        image: temporalio/auto-setup:1.28.1
        depends_on:
          postgresql:
            condition: service_healthy
        ports:
          - "127.0.0.1:7233:7233"
        healthcheck:
          test: ["CMD", "tctl", "--address", "temporal:7233", "cluster", "health"]
      temporal-ui:
        image: temporalio/ui:2.37.1
        depends_on:
          - temporal
        ports:
          - "127.0.0.1:8080:8080"
    """
)


def test_stack_keeps_every_rule() -> None:
    assert problems(load(STACK.read_text()), REPO) == []


def test_rules_catch_the_retired_stack() -> None:
    found = problems(load(RETIRED_STACK), REPO)

    assert "tctl is past its end of support: use the temporal CLI" in found
    assert "temporal: temporalio/auto-setup:1.28.1 is no longer built" in found
    assert "temporal: host port 7233 clashes with the embedded dev server" in found
    assert "no service runs `onward worker`" in found


def test_rules_catch_unpinned_images_clashing_ports_and_missing_files(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        services:
          a:
            image: postgres
            ports: ["${IP:-127.0.0.1}:5442:5432"]
          b:
            image: jaegertracing/jaeger:latest
            depends_on: [c]
            ports: [{target: 16686, published: "5442"}]
            volumes: ["./deploy/nothing.yaml:/etc/x.yaml:ro"]
          worker:
            build: {context: ., dockerfile: deploy/none.Dockerfile}
            image: localhost:5000/onward-worker
            command: onward worker
            environment: ["TEMPORAL_ADDRESS=elsewhere:7233", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            deploy: {replicas: 3}
            ports: ["9000:8000"]
        """
    )

    assert problems(load(text), tmp_path) == [
        "a: image 'postgres' has no tag",
        "b: image 'jaegertracing/jaeger:latest' is pinned to 'latest'",
        "b: depends on 'c', which is not a service",
        "b: host port 5442 is also published by a",
        "b: mounted file './deploy/nothing.yaml' is missing",
        "worker: image 'localhost:5000/onward-worker' has no tag",
        "worker: a replicated service cannot publish fixed host ports",
        "worker: Dockerfile deploy/none.Dockerfile is missing",
        "worker: TEMPORAL_ADDRESS=elsewhere:7233 names no service of the stack",
        "worker: ONWARD_STORE is not set",
        "worker: OTEL_EXPORTER_OTLP_ENDPOINT is not set",
        "worker: ONWARD_PAYLOADS is on no volume its replicas share",
    ]


def test_worker_image_copies_what_exists_and_the_context_lets_it_through() -> None:
    dockerfile = REPO / "deploy" / "worker.Dockerfile"
    ignore = (REPO / "deploy" / "worker.Dockerfile.dockerignore").read_text().splitlines()
    sources = dockerfile_sources(dockerfile)

    assert {"pyproject.toml", "onward", "workflows", "activities", "starter"} <= set(sources)
    assert [source for source in sources if not (REPO / source).exists()] == []
    assert [source for source in sources if f"!{source}" not in ignore] == []


def test_worker_image_installs_every_onward_package() -> None:
    """``pip install .`` in the image ships only the packages pyproject lists."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "onward").glob("**/__init__.py")
        if "__pycache__" not in init.parts
    } | {
        ".".join(("onward", link.name, *init.parent.relative_to(link).parts))
        for link in (REPO / "onward").iterdir()
        if link.is_symlink() and link.is_dir()
        for init in link.glob("**/__init__.py")
    }

    assert sorted(on_disk - listed) == []


def test_mounted_scripts_parse_as_posix_sh() -> None:
    services = load(STACK.read_text())["services"]
    scripts = [path for path in mounted_files(services, REPO) if path.suffix == ".sh"]

    assert len(scripts) == 2  # the schema job and the namespace job
    for script in scripts:
        result = subprocess.run(
            ["sh", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_collector_sends_traces_to_jaeger_and_listens_where_workers_send() -> None:
    stack = load(STACK.read_text())
    config = load((REPO / "deploy" / "otel" / "collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    used = {
        (kind, name)
        for pipeline in pipelines.values()
        for kind in ("receivers", "processors", "exporters")
        for name in pipeline.get(kind, [])
    }
    worker_endpoint = environment(stack["services"]["worker"])["OTEL_EXPORTER_OTLP_ENDPOINT"]
    http_receiver = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    traces_to = [config["exporters"][name]["endpoint"] for name in pipelines["traces"]["exporters"]]

    assert [(kind, name) for kind, name in sorted(used) if name not in config.get(kind, {})] == []
    assert http_receiver == "0.0.0.0:4318"  # the collector's default listens on localhost only
    assert worker_endpoint == "http://otel-collector:4318"
    assert [host_of(endpoint) for endpoint in traces_to] == ["jaeger"]
    assert "jaeger" in stack["services"]


async def create_namespace(address: str, namespace: str, attempts: int = 60) -> tuple[int, str]:
    """Run the stack's namespace job against a real server, with this venv's temporal CLI."""
    cli_dir = Path(temporal_cli()).parent
    process = await asyncio.create_subprocess_exec(
        "sh",
        str(REPO / "deploy" / "temporal" / "create-namespace.sh"),
        env=os.environ
        | {
            "PATH": f"{cli_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": namespace,
            "READY_ATTEMPTS": str(attempts),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_namespace_job_creates_the_namespace_once(client: Client, address: str) -> None:
    namespace = f"compose-{uuid.uuid4().hex[:8]}"

    first = await create_namespace(address, namespace)
    again = await create_namespace(address, namespace)

    assert first[0] == 0, first[1]
    assert first[1].splitlines()[0] == "cluster: healthy"
    assert f"namespace: {namespace} created" in first[1].splitlines()
    assert first[1].splitlines()[-1] == f"namespace: {namespace} ready"
    assert again[0] == 0, again[1]
    assert f"namespace: {namespace} exists" in again[1].splitlines()
    assert f"namespace: {namespace} created" not in again[1].splitlines()
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    assert described.config.workflow_execution_retention_ttl.ToSeconds() == 72 * 3600


async def test_namespace_job_fails_when_the_server_never_answers() -> None:
    code, output = await create_namespace("127.0.0.1:9", "default", attempts=1)

    assert code == 1
    assert "gave up waiting for cluster health after 1 attempts" in output


@pytest.fixture
def offline() -> dict[str, str]:
    """An environment in which any download fails: proxies pointing at a closed port."""
    closed = "http://127.0.0.1:9"
    return os.environ | {"HTTP_PROXY": closed, "HTTPS_PROXY": closed, "NO_PROXY": ""}


def check_jsonschema(path: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_compose_spec_schema_ships_inside_check_jsonschema() -> None:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    assert '"title": "Compose Specification"' in vendored.read_text()


def test_stack_is_valid_compose(offline: dict[str, str]) -> None:
    result = check_jsonschema(STACK, offline)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_schema_rejects_what_compose_would(tmp_path: Path, offline: dict[str, str]) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(STACK.read_text().replace("    depends_on:\n", "    depend_on:\n", 1))

    result = check_jsonschema(broken, offline)

    assert result.returncode == 1
    assert "depend_on" in result.stdout
