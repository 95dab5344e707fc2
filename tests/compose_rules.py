"""The rules temporal-dev.yml keeps that the Compose schema cannot express.

:func:`problems` returns one message per broken rule: images pinned to a tag
(not ``latest``) and still maintained (no ``temporalio/auto-setup``), no
``tctl`` in the stack or the scripts it mounts, host ports distinct and clear of
the embedded dev server, ``depends_on`` naming services, referenced files
present, and a worker whose Temporal, store and collector addresses name
services of the stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from onward.starter.devserver import DEFAULT_PORT, DEFAULT_UI_PORT

__all__ = [
    "DEV_SERVER_PORTS",
    "WORKER_ENV",
    "dockerfile_sources",
    "environment",
    "host_of",
    "load",
    "mounted_files",
    "problems",
]

DEV_SERVER_PORTS = {DEFAULT_PORT, DEFAULT_UI_PORT}
WORKER_ENV = ("TEMPORAL_ADDRESS", "ONWARD_STORE", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Addresses the worker needs, each naming a service of the stack."""

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
        payloads = interpolate(environment(services[name]).get("ONWARD_PAYLOADS") or "")
        if not payloads.startswith("s3://") and not on_named_volume(services[name], payloads):
            # Each replica would keep the large payloads it writes to itself.
            found.append(f"{name}: ONWARD_PAYLOADS is on no volume its replicas share")
    return found


def on_named_volume(service: Mapping[str, Any], path: str) -> bool:
    """Whether ``path`` is on a named volume the service mounts (shared by its replicas)."""
    return bool(path) and any(
        path == target or path.startswith(target.rstrip("/") + "/")
        for target in volume_targets(service)
    )


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


_DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}")


def as_defaulted(value: str) -> str:
    """``value`` as Compose reads it with its variables unset: ``${NAME:-default}``
    is ``default`` (the file's defaults are what these rules check)."""
    return _DEFAULTED.sub(lambda found: found.group(1), value)


def bind_sources(service: Mapping[str, Any]) -> Iterator[str]:
    """Host paths a service bind-mounts (named volumes are not paths)."""
    for volume in service.get("volumes", []):
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        source = as_defaulted(source)
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
            user = dockerfile_user(dockerfile)
            owned = owned_directories(dockerfile, user) if user else set()
            for target in volume_targets(service) if user else []:
                if target.rstrip("/") not in owned:
                    # Docker makes a mount point the image lacks as root's: the
                    # worker, not root, could not write there and would not start.
                    yield f"{dockerfile.name} does not make {target} {user}'s (a volume's mount)"
    for source in bind_sources(service):
        if not (root / source).exists():
            yield f"mounted file {source!r} is missing"


def dockerfile_user(dockerfile: Path) -> str | None:
    """The user a Dockerfile's last USER instruction runs as (None: root)."""
    user = None
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "USER":
            user = words[1].split(":")[0]
    return None if user in (None, "root", "0") else user


def owned_directories(dockerfile: Path, user: str) -> set[str]:
    """Absolute paths the Dockerfile's RUN instructions ``chown`` to ``user``."""
    text = dockerfile.read_text().replace("\\\n", " ")
    owned: set[str] = set()
    for command in re.split(r"&&|;|\n", text):
        words = command.split()
        if "chown" in words:
            rest = [word for word in words[words.index("chown") + 1 :] if not word.startswith("-")]
            if rest and rest[0].split(":")[0] == user:
                owned.update(word.rstrip("/") for word in rest[1:] if word.startswith("/"))
    return owned


def volume_targets(service: Mapping[str, Any]) -> Iterator[str]:
    """Where a service mounts its named volumes."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source = as_defaulted(volume.get("source", ""))
            target = volume.get("target", "")
        else:
            source, _, rest = volume.partition(":")
            target = rest.split(":", 1)[0]
        if source and not source.startswith((".", "/")):
            yield target
