"""The worker's tool wiring: settings from the environment, --tools, clear startup errors."""

from __future__ import annotations

import pytest

from onward.activities.tools import AllowList
from onward.worker import WorkerSettings, main, tool_registry


def test_settings_read_tools_and_allow_list() -> None:
    settings = WorkerSettings.from_env(
        {"ONWARD_TOOLS": " examples.mytools, ,other.mod ", "ONWARD_HTTP_ALLOW": "127.0.0.1"}
    )
    assert settings.tool_modules == ("examples.mytools", "other.mod")
    assert settings.http_allow == AllowList.parse("127.0.0.1")
    assert WorkerSettings.from_env({}).http_allow == AllowList()
    allowed = WorkerSettings.from_env({"ONWARD_WEBHOOK_ALLOW": "hooks.internal"}).webhook_allow
    assert allowed == AllowList.parse("hooks.internal")


def test_registry_has_builtins_http_fetch_and_user_tools() -> None:
    settings = WorkerSettings.from_env({"ONWARD_TOOLS": "examples.mytools"})
    registry = tool_registry(settings)
    assert {"calculator", "http_fetch", "get_weather", "convert_units"} <= set(registry.names())
    assert "http_fetch" in registry.builtin_names()
    assert "get_weather" not in registry.builtin_names()


def test_bad_tools_or_allow_list_stop_the_worker_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ONWARD_TOOLS", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--tools", "nope_not_a_module"])
    assert exited.value.code == 2
    assert "tool module 'nope_not_a_module' not found" in capsys.readouterr().err

    monkeypatch.setenv("ONWARD_HTTP_ALLOW", "*.corp")
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "ONWARD_HTTP_ALLOW: '*.corp' is not an IP address" in capsys.readouterr().err

    monkeypatch.delenv("ONWARD_HTTP_ALLOW")
    monkeypatch.setenv("ONWARD_WEBHOOK_ALLOW", "10.0.0.0/8, hooks/internal")
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "ONWARD_WEBHOOK_ALLOW: 'hooks/internal' is not" in capsys.readouterr().err
