"""The peers' own venv, ``bench/.venv-peers``: created and filled by the bench itself.

The peers (pydantic-ai and the OpenAI Agents SDK) never enter the project's
venv; their workers run on this venv's Python. Versions are pinned in
``bench/peers-requirements.txt`` so every run compares the same releases.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["REQUIREMENTS", "VENV", "ensure_peers_venv"]

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-peers"
REQUIREMENTS = HERE / "peers-requirements.txt"
_STAMP = VENV / ".installed"


def ensure_peers_venv() -> tuple[Path | None, str]:
    """The peers' Python, installing them first if needed; or None and why not."""
    python = VENV / "bin" / "python"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return python, "installed"
    print(f"  installing the peers into {VENV.relative_to(HERE.parent)} (once; about a minute)")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or err.stdout or "").strip().splitlines()[-3:]
        return None, "pip could not install them: " + " | ".join(tail)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"the venv could not be made: {err}"
    _STAMP.write_text(wanted)
    return python, "installed now"
