"""Make an ``asv publish`` site viewable without internet access.

asv >= 0.6 writes an ``index.html`` that loads jQuery, Flot, Bootstrap, stupidtable and
blueimp-md5 from public CDNs (with Subresource-Integrity hashes); on a machine without
internet access the page falls back to asv's "failed to load JavaScript" error page. asv
0.5.1 shipped the same libraries (same major/minor versions) in its own package, under
``asv/www/vendor``. This script fetches that sdist once with pip (``pip download
asv==0.5.1 --no-deps --no-binary :all:``), copies the vendored files into
``<html_dir>/vendor/`` and points the CDN ``<script>``/``<link>`` tags of the generated HTML
at them (dropping the ``integrity``/``crossorigin`` attributes, which name the CDN's bytes).
Nothing else of asv's output is changed. Any CDN URL it does not know is an error, so an asv
upgrade that adds a library is noticed.

Usage::

    python -m benchmarks.asv_offline .asv/html     # after `asv publish`
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ASV_VENDOR_VERSION = "0.5.1"
#: CDN file name suffix -> file in asv 0.5.1's ``www/vendor``.
CDN_TO_VENDOR = {
    "/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "/flot/0.8.3/jquery.flot.min.js": "jquery.flot-0.8.3.min.js",
    "/jquery.flot.time.min.js": "jquery.flot-0.8.3.time.min.js",
    "/jquery.flot.selection.min.js": "jquery.flot-0.8.3.selection.min.js",
    "/jquery.flot.categories.min.js": "jquery.flot-0.8.3.categories.min.js",
    "/jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "/stupidtable.min.js": "stupidtable.js",
    "/md5.min.js": "md5.js",
    "/bootstrap.min.js": "bootstrap-3.1.0.min.js",
    "/bootstrap.min.css": "bootstrap-3.1.0.min.css",
}
CDN_HOSTS = ("code.jquery.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net")


def cdn_reachable(timeout: float = 3.0) -> bool:
    """True if every CDN host accepts a TCP connection on port 443."""
    import socket

    for host in CDN_HOSTS:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                pass
        except OSError:
            return False
    return True


def fetch_vendor(cache_dir: str | os.PathLike) -> Path:
    """Directory holding asv 0.5.1's vendored JS/CSS, downloaded once into ``cache_dir``."""
    cache = Path(cache_dir)
    target = cache / f"asv-{ASV_VENDOR_VERSION}-vendor"
    if all((target / f).exists() for f in CDN_TO_VENDOR.values()):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"asv=={ASV_VENDOR_VERSION}", "--no-deps",
             "--no-binary", ":all:", "-q", "-d", tmp], capture_output=True, text=True)
        sdists = list(Path(tmp).glob("asv-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise RuntimeError(
                f"could not download the asv {ASV_VENDOR_VERSION} sdist with pip (needed for the "
                f"offline JavaScript libraries): {proc.stderr[-1000:]}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                if "/asv/www/vendor/" in member.name and member.isfile():
                    src = tar.extractfile(member)
                    (target / Path(member.name).name).write_bytes(src.read())
    missing = [f for f in CDN_TO_VENDOR.values() if not (target / f).exists()]
    if missing:
        raise RuntimeError(f"asv {ASV_VENDOR_VERSION} sdist lacks vendored files {missing}")
    return target


_TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https://[^\"]+)\"[^>]*>", re.S)


def rewrite_html(html: str) -> str:
    """Point every CDN ``<script src>`` / ``<link href>`` at ``vendor/<file>``."""

    def sub(match):
        tag, url = match.group(0), match.group(2)
        for suffix, local in CDN_TO_VENDOR.items():
            if url.endswith(suffix):
                tag = tag.replace(url, f"vendor/{local}")
                tag = re.sub(r"\s+integrity=\"[^\"]*\"", "", tag)
                tag = re.sub(r"\s+crossorigin=\"[^\"]*\"", "", tag)
                tag = re.sub(r"\s+referrerpolicy=\"[^\"]*\"", "", tag)
                return tag
        if tag.startswith("<link") and "stylesheet" not in tag:
            return tag  # e.g. rel="alternate" feeds: not loaded by the page
        raise ValueError(f"unknown CDN asset {url!r}; extend CDN_TO_VENDOR")

    return _TAG.sub(sub, html)


def make_offline(html_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> list[Path]:
    """Vendor the libraries into ``html_dir/vendor`` and rewrite every ``*.html`` there;
    returns the rewritten files."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"{html_dir} has no index.html; run `asv publish` first.")
    vendor = fetch_vendor(cache_dir)
    (html_dir / "vendor").mkdir(exist_ok=True)
    for f in CDN_TO_VENDOR.values():
        shutil.copy2(vendor / f, html_dir / "vendor" / f)
    changed = []
    for page in html_dir.glob("*.html"):
        text = page.read_text()
        new = rewrite_html(text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("html_dir", nargs="?", default=".asv/html")
    p.add_argument("--cache", default=".asv/vendor-cache")
    args = p.parse_args(argv)
    for page in make_offline(args.html_dir, args.cache):
        print(f"rewrote {page}")


if __name__ == "__main__":
    main()
