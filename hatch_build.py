"""Build hook: put the pinned lightweight-charts ES module into the package before hatchling builds.

Runs for every target (wheel, sdist, editable). From a checkout it runs ``npm ci`` on
``package-lock.json`` (the exact, hash-checked versions) and copies the standalone production
module to ``service/candlecast/static/vendor/lightweight-charts.mjs`` with, beside it, the
SHA-256 of the lock it came from. Both are git-ignored and shipped as build artifacts, so the
sdist carries the built module: building a wheel from it (what ``pip install candlecast-*.tar.gz``
does) finds the module matching its lock and needs no Node.js. A changed lock rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

LOCK = "package-lock.json"
BUILT = "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.mjs"
VENDOR = "service/candlecast/static/vendor"
MODULE = "lightweight-charts.mjs"
STAMP = "package-lock.sha256"
NPM_CI = ("ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error")


class ChartModuleHook(BuildHookInterface):
    """The chart module as package data (see the module docstring)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        vendor = root / VENDOR
        module, stamp = vendor / MODULE, vendor / STAMP
        lock = root / LOCK
        if not lock.is_file():
            raise RuntimeError(f"candlecast build: {LOCK} is missing; it pins the dashboard's chart library")
        want = hashlib.sha256(lock.read_bytes()).hexdigest()
        if module.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
            self.app.display_info(f"candlecast build: chart module up to date ({VENDOR}/{MODULE})")
            return
        npm = os.environ.get("NPM") or shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "candlecast build: the dashboard's chart module is not built and npm is not found. "
                "Install Node.js (npm) to build from a checkout, or install from a wheel or an sdist, "
                "which carry the module."
            )
        self.app.display_info(f"candlecast build: npm {' '.join(NPM_CI)} (from {LOCK})")
        subprocess.run([npm, *NPM_CI], cwd=root, check=True)
        built = root / BUILT
        if not built.is_file():
            raise RuntimeError(f"candlecast build: npm ci did not produce {BUILT}")
        vendor.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, module)
        stamp.write_text(want + "\n")
        self.app.display_info(f"candlecast build: copied {BUILT} -> {VENDOR}/{MODULE}")
