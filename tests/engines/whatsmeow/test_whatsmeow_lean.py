"""A worker loads neonize without the packages it never uses (link previews, downloads
by URL); the first real use of one of them still gets the real package."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from zapmux.engines.whatsmeow import lean

    lean.defer()
    import neonize.aioze.client
    from neonize.utils import iofile

    loaded = {name: type(sys.modules[name]).__name__ for name in lean.DEFERRED
              if name in sys.modules}
    url = iofile.httpx.URL("https://example.com/agenda")  # a real use, through neonize
    import requests
    print(json.dumps({
        "while_deferred": loaded,
        "host": url.host,
        "real_httpx": type(sys.modules["httpx"]).__name__,
        "requests_has_version": hasattr(requests, "__version__"),
        "neonize_client": hasattr(neonize.aioze.client, "NewAClient"),
    }))
    """
)


async def test_deferred_packages_are_stand_ins_until_really_used() -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    report = json.loads(out.decode().strip().splitlines()[-1])
    # (bs4 is only imported by linkpreview, itself deferred: not at all)
    assert report["while_deferred"] == {
        "linkpreview": "_StandIn", "httpx": "_StandIn", "requests": "_StandIn",
    }  # fmt: skip
    assert report["host"] == "example.com" and report["real_httpx"] == "module"
    assert report["requests_has_version"] and report["neonize_client"]
