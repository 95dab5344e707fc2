"""What the worker reads from its environment: its namespace comes from envconfig too."""

from __future__ import annotations

from pathlib import Path

from onward.worker import WorkerSettings

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
