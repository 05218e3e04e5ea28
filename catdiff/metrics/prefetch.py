"""Download the standard InceptionV3 weights for offline FID/KID.

``python -m catdiff.metrics.prefetch [out=PATH]`` fetches torch-fidelity's file, checks the
SHA-256 prefix in its name, writes it atomically and prints ``metrics.inception_weights=PATH``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from catdiff.errors import UserError
from catdiff.files import atomic_open
from catdiff.metrics.inception import INCEPTION_URL, WEIGHTS_KEY

URL = INCEPTION_URL
TIMEOUT_S = 30.0
USAGE = "usage: python -m catdiff.metrics.prefetch [out=PATH]"


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _expected_prefix(url: str) -> str | None:
    """The SHA-256 prefix in the file name (torch hub's ``name-<hex>.ext`` convention)."""
    match = re.search(r"-([a-f0-9]{8,})\.", _file_name(url))
    return match.group(1) if match else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_out() -> Path:
    return Path(os.environ.get("CATDIFF_DATA_DIR") or "data") / "weights" / _file_name(URL)


def download(url: str, out: Path, progress: bool = True) -> Path:
    """Fetch ``url`` to ``out`` (atomically), checking the SHA-256 prefix in its name."""
    h = hashlib.sha256()
    with atomic_open(out, "wb") as f:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=out.name, disable=not progress
                ) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        f.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException, ValueError) as e:
            reason = " ".join(str(getattr(e, "reason", None) or e).split()) or type(e).__name__
            raise UserError(
                f"could not download {url} ({type(e).__name__}: {reason}); run this on a machine "
                f"with network and copy the file here, then set {WEIGHTS_KEY}=PATH"
            ) from None
        prefix = _expected_prefix(url)
        if prefix and not h.hexdigest().startswith(prefix):
            raise UserError(
                f"downloaded {url} but its SHA-256 {h.hexdigest()[:12]} does not start with "
                f"{prefix}: a proxy or a truncated transfer? try again"
            )
    return out


def prefetch(out: str | Path | None = None, progress: bool = True) -> Path:
    """The weights file at ``out`` (default :func:`default_out`), downloaded unless present."""
    path = Path(out).expanduser() if out else default_out()
    prefix = _expected_prefix(URL)
    if path.is_file() and prefix and _sha256(path).startswith(prefix):
        return path.resolve()
    return download(URL, path, progress).resolve()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        out = None
        for arg in args:
            key, sep, value = arg.partition("=")
            if key != "out" or not sep or not value:
                raise UserError(f"unknown argument {arg!r}; {USAGE}")
            out = value
        path = prefetch(out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{WEIGHTS_KEY}={path}")


if __name__ == "__main__":
    main()
