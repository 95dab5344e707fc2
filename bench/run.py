"""The benchmark suite: Onward against the bare workflow (the floor) and the two peers.

    python -m bench.run                      # everything, full sizes (make bench)
    python -m bench.run --quick              # tiny sizes: a minute, to check it works
    python -m bench.run --only sequential,history --history-steps 200

Starts one dev server (in memory, free ports), one fake OpenAI-compatible
server and one worker process per system, all on loopback; the peers are
installed into ``bench/.venv-peers`` first (skipped, with a line saying why,
when that fails). Writes ``latest.json``, ``latest.md`` and PNG plots to
``bench/results/`` (``--quick`` and ``--only`` runs write to ``bench/results/quick`` and
``bench/results/only-*``, which git ignores).
Figures are printed next to the issue's targets; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import shlex
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import cost, history, resume, timing
from bench.harness import Harness, dump, harness
from bench.peers_venv import ensure_peers_venv
from bench.report import render
from bench.systems import System, all_systems

__all__ = ["PARTS", "main"]

PARTS = ("sequential", "throughput", "long_runs", "history", "resume", "cost")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {
    "sequential": ("steps", "rounds"),
    "throughput": ("agents", "agent_steps", "throughput_rounds", "throughput_steps"),
    "long_runs": ("long_agents", "long_steps", "throughput_rounds", "throughput_steps"),
    "history": ("history_steps",),
    "resume": ("resume_repeats",),
    "cost": ("cost_steps",),
}
"""The options that size each part (recorded with the figures)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    add("--quick", action="store_true", help="tiny sizes, to check that everything works")
    add("--no-peers", action="store_true", help="Onward and the floor only")
    add("--systems", help="comma-separated subset of: onward, bare, pydantic-ai, openai-agents")
    add("--steps", type=int, default=30, help="steps of each sequential run")
    add("--rounds", type=int, default=5, help="sequential rounds, after one warm-up round")
    add("--agents", default="1,10,100,1000", help="concurrency levels for throughput")
    add("--agent-steps", type=int, default=3, help="steps of each run in the throughput test")
    add(
        "--throughput-rounds",
        type=int,
        default=3,
        help="interleaved rounds per level (fewer where one round is long enough)",
    )
    add(
        "--throughput-steps",
        type=int,
        default=400,
        help="steps each throughput round runs at least (agents start as others end)",
    )
    add(
        "--long-agents",
        default="10,100",
        help="concurrency levels for throughput with longer runs (the long_runs part)",
    )
    add("--long-steps", type=int, default=10, help="steps of each run in the long_runs part")
    add("--history-steps", type=int, default=1000, help="steps of the history run")
    add("--resume-repeats", type=int, default=5)
    add("--cost-steps", type=int, default=40)
    add("--timeout", type=float, default=900, help="seconds any one run may take")
    add("--server-args", default="", help="extra `temporal server start-dev` arguments, quoted")
    add("--out", type=Path, help="default: bench/results (or a scratch folder under it)")
    return parser


def _quick(args: argparse.Namespace) -> None:
    args.steps, args.rounds, args.agents, args.agent_steps = 3, 1, "1,4", 2
    args.throughput_rounds, args.throughput_steps = 1, 12
    args.long_agents, args.long_steps = "4", 4
    args.history_steps, args.resume_repeats, args.cost_steps, args.timeout = 12, 1, 6, 120


async def _measure(bench: Harness, parts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}

    def sustained(levels: str, steps: int) -> Awaitable[dict[str, list[timing.Throughput]]]:
        agents = [int(n) for n in levels.split(",")]
        rounds, min_steps = args.throughput_rounds, args.throughput_steps
        return timing.throughput(bench, agents, steps, rounds, min_steps, args.timeout)

    steps: dict[str, Callable[[], Awaitable[Any]]] = {
        "sequential": lambda: timing.sequential(bench, args.steps, args.rounds),
        "throughput": lambda: sustained(args.agents, args.agent_steps),
        "long_runs": lambda: sustained(args.long_agents, args.long_steps),
        "history": lambda: history.history(bench, args.history_steps, args.timeout),
        "resume": lambda: resume.resume(bench, args.resume_repeats),
        "cost": lambda: cost.cost(bench, args.cost_steps, args.timeout),
    }
    for part in parts:
        started = time.monotonic()
        print(f"\n== {part}")
        figures = await steps[part]()
        data[part] = _plain(figures)
        print(f"   ({time.monotonic() - started:.0f} s)")
    return data


def _plain(value: Any) -> Any:
    """Dataclasses (and their properties worth keeping) as JSON-able data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, resume.Resume):
        return {
            **dataclasses.asdict(value),
            "median_s": value.median_s,
            "between_median_s": value.between_median_s,
        }
    if isinstance(value, cost.Cost):
        kept = {"uncached_cost_usd": value.uncached_cost_usd, "saved_usd": value.saved_usd}
        return {**dataclasses.asdict(value), **kept}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


async def main(argv: list[str] | None = None) -> Path:
    """Run the chosen parts; return the results directory."""
    args = _parser().parse_args(argv)
    if args.quick:
        _quick(args)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    partial = sorted(parts) != sorted(PARTS)
    scratch = RESULTS / ("quick" if args.quick else f"only-{'-'.join(parts)}")
    out: Path = args.out or (scratch if partial or args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_peers:
        peers_python, peers = None, "skipped (--no-peers)"
    else:
        peers_python, why = ensure_peers_venv()
        peers = "pydantic-ai, openai-agents" if peers_python else f"SKIPPED: {why}"
    if peers_python is None:
        print(f"  peers {peers}; measuring Onward against the floor only")
    sizes = {
        name: getattr(args, name)
        for part, names in SIZES.items()
        if part in parts
        for name in names
    }
    data: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, temporalio {version('temporalio')}, "
        "dev server in memory",
        "sizes": sizes,
        "peers": peers,
    }
    logs = out / "logs"
    chosen = {name.strip() for name in (args.systems or "").split(",") if name.strip()}

    def systems(model_url: str) -> list[System]:
        every = all_systems(model_url, peers_python)
        return [s for s in every if s.name in chosen] if chosen else every

    async with harness(systems, logs, shlex.split(args.server_args)) as bench:
        data |= await _measure(bench, parts, args)
    dump(out / "latest.json", data)
    print("\n" + render(data, out))
    print(f"written: {out}/latest.json, latest.md, *.png (worker logs in {logs})")
    return out


if __name__ == "__main__":
    asyncio.run(main())
