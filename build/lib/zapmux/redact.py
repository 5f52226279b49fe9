"""Hiding credentials that ride inside URLs (``user:password@``, ``?token=…``)."""

from __future__ import annotations

import re

_URL_USERINFO = re.compile(r"(?<=://)[^\s/?#@]+@")
_QUERY_VALUE = re.compile(r"([?&][^=&\s#\"']+=)[^&\s#\"']+")


def redact_urls(text: str) -> str:
    """``text`` with every URL's user info and query values replaced by ``***``."""
    return _QUERY_VALUE.sub(r"\1***", _URL_USERINFO.sub("***@", text))
