"""temporal-dev.yml, checked without a Docker engine.

No Docker engine runs on these machines, and Debian's docker-compose 1.29 is
too old for the current Compose specification. So the file is validated
against the specification's JSON schema (vendored in check-jsonschema: no
network), then against the rules the schema cannot express: images pinned and
still maintained, no tctl, host ports distinct and clear of the embedded dev
server, dependencies and referenced files present, the worker wired to
Temporal, the store and the collector by service name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from onward.starter.devserver import DEFAULT_PORT, DEFAULT_UI_PORT

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "temporal-dev.yml"
DEV_SERVER_PORTS = {DEFAULT_PORT, DEFAULT_UI_PORT}
WORKER_ENV = ("TEMPORAL_ADDRESS", "ONWARD_STORE", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Addresses the worker needs, each naming a service of the stack."""

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

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
_TCTL = re.compile(r"\btctl\b")


def load(text: str) -> dict[str, Any]:
    """A Compose file as plain data (anchors and merge keys resolved)."""
    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: each variable takes its default."""
    return _VARIABLE.sub(lambda match: match.group(2) or "", value)


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned to a tag, or None."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon <= slash:
        return f"image {image!r} has no tag"
    if name[colon + 1 :] == "latest":
        return f"image {image!r} is pinned to 'latest'"
    return None


def host_ports(service: Mapping[str, Any]) -> Iterator[int]:
    """The host ports a service publishes (short and long syntax)."""
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            if published is not None:
                yield int(interpolate(str(published)))
            continue
        parts = interpolate(str(entry)).split("/")[0].split(":")
        if len(parts) >= 2:  # [ip:]host:container; a bare container port publishes none
            yield int(parts[-2])


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment, from either the mapping or the list form."""
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {name: value if sep else None for name, sep, value in pairs}
    return {str(name): None if value is None else str(value) for name, value in env.items()}


def host_of(address: str) -> str:
    """The host part of ``host:port`` or of a URL such as ``postgresql://u:p@host:5432/db``."""
    rest = address.split("://", 1)[-1].rsplit("@", 1)[-1]
    return rest.split("/", 1)[0].rsplit(":", 1)[0]


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The context paths a Dockerfile's COPY and ADD instructions read (not --from stages)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from") for word in words[1:]):
            continue
        sources.extend(arg.rstrip("/") for arg in args[:-1])
    return sources


def problems(stack: Mapping[str, Any], root: Path) -> list[str]:
    """Every rule the Compose schema cannot check, as one message per broken rule."""
    found: list[str] = []
    services: dict[str, Any] = stack.get("services", {})
    if any(_TCTL.search(value) for value in strings(stack)) or any(
        _TCTL.search(line) for line in code_lines(mounted_files(services, root))
    ):
        found.append("tctl is past its end of support: use the temporal CLI")
    published: dict[int, str] = {}
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            found.append(f"{name}: no image (a built service names its image and tag too)")
        else:
            if "auto-setup" in image:
                found.append(f"{name}: {image} is no longer built")
            if problem := image_problem(image):
                found.append(f"{name}: {problem}")
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                found.append(f"{name}: depends on {dependency!r}, which is not a service")
        ports = list(host_ports(service))
        if ports and "replicas" in service.get("deploy", {}):
            found.append(f"{name}: a replicated service cannot publish fixed host ports")
        for port in ports:
            if port in DEV_SERVER_PORTS:
                found.append(f"{name}: host port {port} clashes with the embedded dev server")
            if port in published:
                found.append(f"{name}: host port {port} is also published by {published[port]}")
            published[port] = name
        found.extend(f"{name}: {missing}" for missing in missing_files(service, root))
    workers = [name for name, service in services.items() if is_onward_worker(service)]
    if not workers:
        found.append("no service runs `onward worker`")
    for name in workers:
        env = environment(services[name])
        for variable in WORKER_ENV:
            value = env.get(variable)
            if not value:
                found.append(f"{name}: {variable} is not set")
            elif host_of(value) not in services:
                found.append(f"{name}: {variable}={value} names no service of the stack")
    return found


def strings(data: Any) -> Iterator[str]:
    """Every string in parsed YAML: keys, values, commands, healthchecks."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(data, list):
        for item in data:
            yield from strings(item)


def bind_sources(service: Mapping[str, Any]) -> Iterator[str]:
    """Host paths a service bind-mounts (named volumes are not paths)."""
    for volume in service.get("volumes", []):
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith((".", "/")):
            yield source


def mounted_files(services: Mapping[str, Any], root: Path) -> Iterator[Path]:
    """The repository's files bind-mounted into services (scripts and configs)."""
    for service in services.values():
        for source in bind_sources(service):
            path = root / source
            yield from sorted(path.rglob("*")) if path.is_dir() else [path]


def code_lines(paths: Iterator[Path]) -> Iterator[str]:
    """The lines of existing files that are not comments."""
    for path in paths:
        if path.is_file():
            lines = path.read_text().splitlines()
            yield from (line for line in lines if not line.lstrip().startswith("#"))


def is_onward_worker(service: Mapping[str, Any]) -> bool:
    command = service.get("command", "")
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    return words[-2:] == ["onward", "worker"]


def missing_files(service: Mapping[str, Any], root: Path) -> Iterator[str]:
    """Files a service reads from the repository that do not exist."""
    build = service.get("build")
    if build is not None:
        context = root / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        if not dockerfile.is_file():
            yield f"Dockerfile {dockerfile.relative_to(root)} is missing"
        else:
            for source in dockerfile_sources(dockerfile):
                if not (context / source).exists():
                    yield f"{dockerfile.name} copies {source!r}, which is missing"
    for source in bind_sources(service):
        if not (root / source).exists():
            yield f"mounted file {source!r} is missing"


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
    pyproject = (REPO / "pyproject.toml").read_text()
    listed = set(re.findall(r'^\s*"(onward(?:\.\w+)*)",?$', pyproject, flags=re.MULTILINE))
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
