"""The Web UI's texts as pure functions: no server (the browser check is test_web_ui.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from onward.contracts import AgentInput, AgentStatus, Budget, RunUsage, StepRecord, ToolCall
from onward.markdown import code_span, escape_markdown
from onward.starter.render import static_details, static_summary
from onward.workflows.progress import progress_card, tool_summary, usage_line

_UNESCAPED = re.compile(r"(?<!\\)[$*_`<>\[\]#~|]")


def test_dollars_are_not_maths() -> None:
    assert escape_markdown("$0.0001 / $0.0100") == r"\$0.0001 / \$0.0100"


def test_what_the_ui_would_restyle_is_escaped() -> None:
    assert escape_markdown("*a* _b_ `c` <b>d</b> [e](f)") == (
        r"\*a\* \_b\_ \`c\` \<b\>d\</b\> \[e\]\(f\)"
    )
    assert escape_markdown("1/2 -- x... a=b") == r"1&#47;2 \-\- x\.\.\. a&#61;b"
    assert escape_markdown("1. first\n    indented\n# not a heading") == (
        "1\\. first\nindented\n\\# not a heading"
    )
    assert escape_markdown("3.5 / 4, done.") == "3.5 / 4, done."  # plain figures stay plain


@given(st.text())
def test_no_markdown_character_is_left_bare(text: str) -> None:
    escaped = re.sub(r"&#\d+;", "", escape_markdown(text))
    # Every active character is preceded by a backslash that is itself not escaped.
    for match in _UNESCAPED.finditer(escaped):
        backslashes = len(escaped[: match.start()]) - len(escaped[: match.start()].rstrip("\\"))
        assert backslashes % 2 == 1, (text, escaped)


def test_code_span_cannot_be_closed_early() -> None:
    assert code_span("gpt`4\nx") == "`gpt'4 x`"


def _status(**changes: object) -> AgentStatus:
    fields: dict[str, object] = {
        "state": "budget_exceeded",
        "step": 2,
        "model": "openai:gpt-4o-mini",
        "usage": RunUsage(total_tokens=30, tool_calls=1, steps=2, cost_usd=0.0001),
        "budget": Budget(max_cost_usd=0.01, max_steps=2),
        "reason": "max_steps: 2 of 2 used",
    }
    fields.update(changes)
    return AgentStatus.model_validate(fields)


def test_the_card_escapes_costs_and_model_text() -> None:
    last = StepRecord(
        step=2,
        text="costs $3, *really*",
        tool_calls=[],
        started_at="2026-12-02T00:00:00Z",
    )
    card = progress_card(_status(last_step=last))
    assert card.startswith(r"**budget\_exceeded** · step 2 · `openai:gpt-4o-mini`")
    assert r"cost \$0.000100 / \$0.0100" in card
    assert r"last: answer — costs \$3, \*really\*" in card
    assert r"reason: max\_steps: 2 of 2 used" in card
    # The CLI shows the same line unescaped: it is not markdown there.
    assert "cost $0.000100 / $0.0100" in usage_line(_status().usage, _status().budget)


def test_the_card_shows_small_and_unknown_costs_as_they_are() -> None:
    tiny = RunUsage(cost_usd=0.000018)
    assert "cost $0.0000180" in usage_line(tiny, Budget())
    unpriced = RunUsage(cost_usd=0.0, cost_known=False)
    assert "cost cost unknown" not in usage_line(unpriced, Budget())
    assert usage_line(unpriced, Budget()).endswith(" · cost unknown (unpriced model)")
    partly = RunUsage(cost_usd=0.002, cost_known=False)
    assert "cost at least $0.002000 (some calls unpriced)" in usage_line(partly, Budget())


def test_summaries_and_details_escape_the_prompt() -> None:
    agent = AgentInput(prompt="pay $5 *now*\n  - then $10", system="be `terse`")
    assert static_summary(agent) == r"pay \$5 \*now\* \- then \$10"
    details = static_details(agent)
    assert "> pay \\$5 \\*now\\*\n> \\- then \\$10" in details
    assert r"**system** be \`terse\`" in details
    assert "**model** `" in details
    assert "fallback" not in details


def test_the_details_name_the_fallback_models() -> None:
    # The Web UI's details of a run that may go on with other models name them.
    agent = AgentInput(
        prompt="p", model="openai:gpt-4o-mini", fallback_models=["anthropic:claude-x", "scripted"]
    )
    assert static_details(agent).split("\n\n")[:2] == [
        "**model** `openai:gpt-4o-mini`",
        "**fallback models** `anthropic:claude-x`, `scripted`",
    ]


def test_tool_summaries_stay_plain() -> None:
    # The timeline shows activity summaries as plain text; history readers match them.
    call = ToolCall(id="c1", name="calculator", arguments={"expression": "2*3*$4"})
    assert tool_summary(call) == "calculator(2*3*$4)"


def test_a_failed_step_says_why_and_a_stored_run_points_to_its_whole_log() -> None:
    failed = StepRecord(step=3, error="rate limited", started_at="2026-12-02T00:00:00Z")
    card = progress_card(_status(last_step=failed))
    assert "last: model call failed — rate limited" in card
    assert "last: answer — \n" not in card + "\n"
    assert "whole step log" not in card
    stored = _status(last_step=failed).model_copy(update={"transcript": "run-1.abc"})
    assert "whole step log: `onward steps <run id>`" in progress_card(stored)
