"""Render a bench result (``latest.json``) as a markdown table and PNG plots.

    python -m bench.report [bench/results/latest.json]

re-renders ``latest.md`` and the plots from a saved result without rerunning.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.cost import UNCLEARED
from bench.fake_openai import PRICE_PER_MTOK
from bench.systems import FLOOR, PEERS

__all__ = ["HISTORY_STEPS", "TARGETS", "markdown", "plot", "render", "summary"]

HISTORY_STEPS = (10, 100, 500, 1000)
TARGETS = {
    "throughput_vs_floor": 0.95,
    "rss_mb_at_1000": 300.0,
    "step_vs_floor": 1.05,
    "step_vs_peer": 0.55,
    "resume_s": 3.5,
    "cost_vs_peer": 0.6,
}
"""The issue's targets: printed next to the figures, never asserted."""


TIMES = "\u00d7"
NONE = "\u2013"
"""An en dash: what a table shows where there is no figure."""


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _x(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}{TIMES}"


def _ms(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def _verdict(value: float | None, limit: float, at_least: bool = False) -> str:
    if value is None:
        return "not measured"
    met = value >= limit if at_least else value <= limit
    return f"{'met' if met else 'NOT met'} (target {'≥' if at_least else '≤'} {limit:g})"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _sequential(data: dict[str, Any]) -> list[str]:
    seq: dict[str, Any] = data["sequential"]
    floor = seq.get(FLOOR, {}).get("step_ms")
    rows = [
        [
            name,
            f"{fig['step_ms']:.1f}",
            _x(_ratio(fig["step_ms"], floor)),
            f"{fig['cpu_ms_per_step']:.1f}",
            str(fig["failed"]),
        ]
        for name, fig in seq.items()
    ]
    lines = ["### Sequential: one agent, per-step time (median of rounds)", ""]
    lines += _table(["system", "ms / step", "vs floor", "worker CPU ms / step", "failed"], rows)
    onward = seq.get("onward", {}).get("step_ms")
    paired = _round_by_round(
        seq.get("onward", {}).get("each_round", []), seq.get(FLOOR, {}).get("each_round")
    )
    verdict = _verdict(_ratio(onward, floor), TARGETS["step_vs_floor"])
    lines += ["", f"- Onward vs floor: {verdict}{paired}"]
    for peer in PEERS:
        if peer in seq:
            ratio = _ratio(onward, seq[peer]["step_ms"])
            lines.append(
                f"- Onward vs {peer}: {_x(ratio)}, {_verdict(ratio, TARGETS['step_vs_peer'])}"
            )
    return lines


def _throughput(data: dict[str, Any]) -> list[str]:
    lines = _throughput_table(data["throughput"], "### Throughput: concurrent agents on one worker")
    for fig in data["throughput"].get("onward", []):
        if fig["agents"] == 1000:
            rss = _verdict(fig["peak_rss_mb"], TARGETS["rss_mb_at_1000"])
            lines.append(f"- Onward peak RSS at 1000 agents: {fig['peak_rss_mb']:.0f} MB, {rss}")
    return lines


def _long_runs(data: dict[str, Any]) -> list[str]:
    steps = data["sizes"].get("long_steps", "?")
    title = f"### Throughput with longer runs ({steps} tool steps each)"
    return _throughput_table(data["long_runs"], title)


def _throughput_table(runs: dict[str, list[dict[str, Any]]], title: str) -> list[str]:
    """One row per system and level, and Onward's ratio to the floor against the target."""
    floor = {f["agents"]: f["steps_per_s"] for f in runs.get(FLOOR, [])}
    rows = []
    for name, figures in runs.items():
        for fig in figures:
            failed = f" ({fig['failed']} failed)" if fig["failed"] else ""
            rows.append(
                [
                    name,
                    str(fig["agents"]),
                    f"{fig['steps_per_s']:.1f}{failed}",
                    _x(_ratio(fig["steps_per_s"], floor.get(fig["agents"]))),
                    f"{fig['cpu_ms_per_step']:.1f}",
                    _ms(fig.get("server_cpu_ms_per_step")),
                    _ms(fig.get("client_cpu_ms_per_step"), 2),
                    _ms(fig.get("model_cpu_ms_per_step"), 2),
                    f"{fig['peak_rss_mb']:.0f}",
                ]
            )
    head = ["system", "agents", "steps / s", "vs floor", "worker CPU ms / step"]
    head += ["dev server CPU ms / step", "client CPU ms / step", "fake model CPU ms / step"]
    head += ["peak RSS MB"]
    lines = [title, "", *_table(head, rows)]
    lines.append("")
    floor_rounds = {f["agents"]: f.get("each_round", []) for f in runs.get(FLOOR, [])}
    for fig in runs.get("onward", []):
        if fig["agents"] >= 10:
            ratio = _ratio(fig["steps_per_s"], floor.get(fig["agents"]))
            verdict = _verdict(ratio, TARGETS["throughput_vs_floor"], at_least=True)
            paired = _round_by_round(fig.get("each_round", []), floor_rounds.get(fig["agents"]))
            lines.append(
                f"- Onward at {fig['agents']} agents vs floor: {_x(ratio)}, {verdict}{paired}"
            )
    return lines


def _round_by_round(onward: list[float], floor: list[float] | None) -> str:
    """Onward's ratio to the floor in each round, and their median, where there are several.

    The table's ratio is of the two medians, which may come from different rounds;
    a round's systems run back to back, so its own ratio is the like-for-like one.
    """
    if not floor or len(onward) != len(floor) or len(onward) < 2:
        return ""
    ratios = [a / b for a, b in zip(onward, floor, strict=True) if b]
    if not ratios:
        return ""
    each = ", ".join(_x(r) for r in ratios)
    return f"; round by round {each} (median {_x(statistics.median(ratios))})"


def _history(data: dict[str, Any]) -> list[str]:
    runs: dict[str, dict[str, Any]] = data["history"]
    head = ["system", "ended", "steps_total, runs", "KB / step over the chain"]
    head += [f"step {n}" for n in HISTORY_STEPS]
    rows = []
    for name, run in runs.items():
        step_bytes, step_events = run["step_bytes"], run["step_events"]
        total = run.get("steps_total") or len(step_bytes)
        mean_kb = sum(step_bytes) / total / 1e3 if total else 0.0
        cells = [name, run["ended"], f"{total:,}, {run.get('runs', 1)}", f"{mean_kb:,.1f}"]
        for n in HISTORY_STEPS:
            if n <= len(step_bytes):
                total_kb, events = sum(step_bytes[:n]) / 1e3, sum(step_events[:n])
                cells.append(
                    f"{total_kb:,.0f} KB, {events:,} events; this step "
                    f"{step_bytes[n - 1] / 1e3:,.1f} KB, {step_events[n - 1]} events"
                )
            else:
                cells.append("not reached")
        rows.append(cells)
    lines = ["### Event history at step N: total so far; added by step N (one long run each)", ""]
    lines += _table(head, rows)
    lines += [
        "",
        "A system that sends the whole conversation with every model call records it in every",
        "model activity's input, so each step adds more than the last and the history grows",
        "quadratically, until Temporal's history size limit (50 MB by default) ends the run.",
        "A run that continues as new is read along its whole chain (each run's",
        "`continued_execution_run_id`), and its bytes are summed over every run of it.",
    ]
    return lines


def _between(run: dict[str, Any]) -> str:
    """New worker start to the next model call, after a kill between steps."""
    times = run.get("between_s") or []
    if not times:
        return NONE
    each = ", ".join(f"{s:.2f}" for s in times)
    return f"{run['between_median_s']:.2f} ({each})"


def _resume(data: dict[str, Any]) -> list[str]:
    runs: dict[str, dict[str, Any]] = data["resume"]
    rows = [
        [
            name,
            f"{run['median_s']:.2f}" if run["resume_s"] else NONE,
            ", ".join(f"{s:.2f}" for s in run["resume_s"]),
            ", ".join(f"{s:.2f}" for s in run["worker_ready_s"]),
            _between(run),
            "; ".join(run["failures"]) or NONE,
        ]
        for name, run in runs.items()
    ]
    lines = ["### Resume after kill -9 mid model call (new worker start → retried call done)", ""]
    head = ["system", "median s", "each s", "new worker ready s"]
    head += ["killed between steps: median s (each)", "failures"]
    lines += _table(head, rows)
    onward = runs.get("onward")
    if onward:
        median = onward["median_s"] if onward["resume_s"] else None
        lines += ["", f"- Onward median resume: {_verdict(median, TARGETS['resume_s'])}"]
    return lines


def _uncached(run: dict[str, Any]) -> float:
    """A run's bill had no prompt tokens been cached (older results lack the figure)."""
    if "uncached_cost_usd" in run:
        return float(run["uncached_cost_usd"])
    discount = PRICE_PER_MTOK["input"] - PRICE_PER_MTOK["cached_input"]
    return float(run["cost_usd"]) + int(run["cached_tokens"]) * discount / 1e6


def _cost(data: dict[str, Any]) -> list[str]:
    runs: dict[str, dict[str, Any]] = data["cost"]
    rows = [
        [
            name,
            str(run["requests"]),
            f"{run['prompt_tokens']:,}",
            f"{run['cached_tokens']:,}",
            f"{run['completion_tokens']:,}",
            f"{run['cost_usd']:.4f}",
            f"{_uncached(run):.4f}",
            "yes" if run["ok"] else "no",
        ]
        for name, run in runs.items()
    ]
    steps = data["sizes"].get("cost_steps", "?")
    lines = [f"### Billed tokens and cost of one {steps}-step tool-heavy run", ""]
    lines += _table(
        [
            "system",
            "model calls",
            "prompt tokens",
            "cached",
            "completion",
            "cost USD",
            "no-cache USD",
            "completed",
        ],
        rows,
    )
    onward = runs.get("onward", {}).get("cost_usd")
    lines.append("")
    if "onward" in runs:
        mine = runs["onward"]
        uncached = _uncached(mine)
        ratio = _ratio(onward, uncached)
        lines.append(
            f"- Onward vs Onward with caching off: {_x(ratio)} "
            f"({mine['cached_tokens']:,} prompt tokens billed at the cached rate saved "
            f"${uncached - mine['cost_usd']:.4f})"
        )
    if "onward" in runs and UNCLEARED in runs:
        ratio = _ratio(onward, runs[UNCLEARED]["cost_usd"])
        lines.append(f"- Onward with tool-result clearing vs without (its default): {_x(ratio)}")
    for peer in PEERS:
        if peer in runs:
            ratio = _ratio(onward, runs[peer]["cost_usd"])
            lines.append(
                f"- Onward vs {peer}: {_x(ratio)}, {_verdict(ratio, TARGETS['cost_vs_peer'])}"
            )
    return lines


METHOD = """\
How: one Temporal dev server (in memory) and one fake OpenAI-compatible server on loopback,
one worker process per system, all on the same machine at the same time. Every system runs
the same task: N steps of one `record` tool call (the model's arguments carry a ~1 KB note),
then a text answer; a *step* is one model call, the answer included. Rounds are interleaved,
in turn forwards and backwards (A, B, C, D, then D, C, B, A: a batch leaves the server work
and garbage that the next system's batch pays for, so no system always follows the same
one), and figures are medians. Throughput at N agents keeps N runs (of
`agent_steps` steps) in flight, starting one as another ends, for at least
`throughput_steps` steps or one run per agent, whichever is more, in up to
`throughput_rounds` interleaved rounds (as many as make `throughput_rounds` times
`throughput_steps` steps: one at 1,000 agents), and the median round is kept.
The long_runs part measures the same way with runs of `long_steps` steps (the issue's
"10 agents of 10 steps"): a system's cost per run (starting, validating, closing) weighs
less against its cost per step there than in runs of `agent_steps`.

- **onward**: the real `worker.py` (`--tools bench.onward_tools`); the tool is a local
  activity; its providers post with aiohttp.
- **bare** (the floor): one regular activity (the same HTTP model call, posted with httpx,
  as the peers' SDKs do) and one local activity per step, and no conversation: what any
  durable step costs, and nothing else.
- **pydantic-ai**: `Agent` with `TemporalDurability` and `PydanticAIPlugin`; model request
  and tool call are one activity each.
- **openai-agents**: the OpenAI Agents SDK with Temporal's `OpenAIAgentsPlugin` (Chat
  Completions); the tool is an activity through `activity_as_tool`.

Every worker gets a 1 s sticky-queue timeout, and a heartbeat timeout on the model call:
2 s for Onward, 4 s (Onward's earlier setting) for the floor and the peers (the peers'
defaults are 10 s sticky; 30 s heartbeat for pydantic-ai, none for the OpenAI Agents plugin).
Onward's and the floor's model calls send their first heartbeat one interval into the
call (0.5 s and 1 s), so a call that answers sooner sends none.
Cost is measured on a tool-heavy task instead: N steps of one `read` call (tiny arguments)
whose result is a ~4 KB page, then an answer that names how many pages the model was sent
and a digest of the last one (a run counts only with that answer). Onward runs it with
tool-result clearing (`clear_tool_results`: trigger 8,000 tokens, keep 3, clear at least
4,000) and, as `onward-no-clearing`, without (its default); the peers as they come.
Prices: gpt-4.1's list price ($2 / $0.50 cached / $8 per million tokens), about
4 characters a token, and OpenAI's automatic prefix caching (prompts of 1,024 tokens
or more, 128-token blocks).
CPU and RSS are the worker process's own (from /proc), sampled every 50 ms; the dev
server's CPU per step is its process's CPU during the system's rounds (/proc), divided by
the system's steps, and the client's is the bench process's own (starting the runs and
reading their results through each system's client), divided the same way.
"""


def summary(data: dict[str, Any]) -> list[str]:
    """One row per system with the headline figures (the README's table)."""
    seq = data.get("sequential", {})
    runs = data.get("throughput", {})
    hist = data.get("history", {})
    res = data.get("resume", {})
    bills = data.get("cost", {})
    floor_step = seq.get(FLOOR, {}).get("step_ms")
    floor_rate = {f["agents"]: f["steps_per_s"] for f in runs.get(FLOOR, [])}
    levels = [f["agents"] for f in runs.get(FLOOR, [])]
    top = max(levels, default=None)
    names = list(dict.fromkeys([*seq, *runs, *hist, *res, *bills]))
    head = ["system", "ms / step (vs floor)"]
    head += [f"steps/s at concurrency {n} (vs floor)" for n in levels]
    head += [f"CPU ms/step, RSS MB at {top or NONE}", "history KB at step 100", "resume s"]
    head += ["cost USD"]
    rows = []
    for name in names:
        row = [f"**{name}**" if name == "onward" else name]
        step = seq.get(name, {}).get("step_ms")
        row.append(NONE if step is None else f"{step:.1f} ({_x(_ratio(step, floor_step))})")
        by_level = {f["agents"]: f for f in runs.get(name, [])}
        for n in levels:
            fig = by_level.get(n)
            rate = fig["steps_per_s"] if fig else None
            ratio = _ratio(rate, floor_rate.get(n))
            row.append(NONE if rate is None else f"{rate:.1f} ({_x(ratio)})")
        at_top = by_level.get(top) if top is not None else None
        row.append(
            f"{at_top['cpu_ms_per_step']:.1f}, {at_top['peak_rss_mb']:.0f}" if at_top else NONE
        )
        step_bytes = hist.get(name, {}).get("step_bytes", [])
        row.append(f"{sum(step_bytes[:100]) / 1e3:,.0f}" if len(step_bytes) >= 100 else NONE)
        times = res.get(name, {}).get("resume_s")
        row.append(f"{res[name]['median_s']:.2f}" if times else NONE)
        bill = bills.get(name)
        row.append(f"{bill['cost_usd']:.4f}" if bill else NONE)
        rows.append(row)
    return _table(head, rows)


def markdown(data: dict[str, Any]) -> str:
    """The whole result as markdown: one table per measurement, targets underneath."""
    sizes = ", ".join(f"{k}={v}" for k, v in data["sizes"].items())
    lines = [
        f"## Bench results ({data['generated_at']})",
        "",
        f"Machine: {data['machine']}. Sizes: {sizes}. Peers: {data['peers']}.",
        "",
        *[f"Note: {note}" for note in data.get("notes", [])],
        *([""] if data.get("notes") else []),
        *summary(data),
        "",
        METHOD,
    ]
    sections = {
        "sequential": _sequential,
        "throughput": _throughput,
        "long_runs": _long_runs,
        "history": _history,
        "resume": _resume,
        "cost": _cost,
    }
    for key, section in sections.items():
        if data.get(key):
            lines += [*section(data), ""]
    plots = [
        name
        for name in ("history_bytes_per_step.png", "throughput.png")
        if data.get("plots", {}).get(name)
    ]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines).rstrip() + "\n"


def plot(data: dict[str, Any], out: Path) -> dict[str, bool]:
    """History bytes per step against step, and throughput against concurrency (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, bool] = {}
    if data.get("history"):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        # Dashed and drawn last, so Onward stays visible where a peer's line lies on it.
        for name, run in sorted(data["history"].items(), key=lambda item: item[0] == "onward"):
            steps = range(1, len(run["step_bytes"]) + 1)
            ax.plot(
                steps,
                [b / 1e3 for b in run["step_bytes"]],
                linestyle="--" if name == "onward" else "-",
                linewidth=2 if name == "onward" else 1.5,
                label=f"{name} ({run['ended']})",
            )
        ax.set(xlabel="step", ylabel="history KB added by the step", title="History bytes per step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "history_bytes_per_step.png", dpi=110)
        plt.close(fig)
        made["history_bytes_per_step.png"] = True
    if data.get("throughput"):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, figures in data["throughput"].items():
            ax.plot(
                [f["agents"] for f in figures],
                [f["steps_per_s"] for f in figures],
                marker="o",
                label=name,
            )
        ax.set(xlabel="concurrent agents", ylabel="steps / s", title="Throughput on one worker")
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        made["throughput.png"] = True
    return made


def render(data: dict[str, Any], out: Path) -> str:
    """Write the plots and ``latest.md`` next to ``latest.json``; return the markdown."""
    data["plots"] = plot(data, out)
    text = markdown(data)
    (out / "latest.md").write_text(text)
    return text


if __name__ == "__main__":
    path = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    )
    print(render(json.loads(path.read_text()), path.parent))
