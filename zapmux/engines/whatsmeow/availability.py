"""Whether this machine can run the whatsmeow engine: neonize must load in a worker.

neonize ships wheels for Linux x86_64 and aarch64 (glibc ≥ 2.34) and needs libmagic;
elsewhere, or without them, it cannot be imported. The server never loads neonize
itself, so it asks a child interpreter at start (:func:`probe`); a worker that cannot
load it reports ``Failed`` with :func:`unavailable`'s words, so that its tenant stops
as ``failed`` instead of retrying something that retrying will not fix.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

HINT = (
    "it is installed with zapmux on Linux x86_64 or aarch64 with glibc 2.34 or newer "
    "(pip install zapmux) and needs libmagic1 (apt-get install libmagic1); "
    "or use --engine sandbox"
)
PROBE_TIMEOUT_S = 60.0


def unavailable(cause: BaseException | str) -> str:
    """Why the whatsmeow engine cannot run here, for a person."""
    if isinstance(cause, BaseException):
        cause = f"{type(cause).__name__}: {cause}"
    return f"the whatsmeow engine cannot load neonize ({cause}); {HINT}"


def probe(python: str = sys.executable, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a worker could not load neonize on this machine, or None when it can.

    Imports it in a child interpreter, as a worker would (the caller stays free of it).
    """
    if importlib.util.find_spec("neonize") is None:
        return unavailable(ModuleNotFoundError("No module named 'neonize'"))
    try:
        done = subprocess.run(
            [python, "-c", "import neonize.aioze.client"],
            capture_output=True,
            timeout=timeout_s,
            env={**os.environ, "NEONIZE_BOT_TAG": "off"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return unavailable(exc)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    return unavailable(lines[-1] if lines else f"exit code {done.returncode}")
