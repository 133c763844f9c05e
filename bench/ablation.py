"""Earlier commits of jobcast, runnable beside the current one, for before/after ratios in one run.

Each optimisation of the event path landed as a commit; `checkout(commit)` puts that commit in a
git worktree and installs it (editable, no dependencies) into a small venv that borrows this
venv's packages, so `bench/run.py` can run the same scenario on several versions of jobcast
in alternation, within one run and under the same load (docs/benchmarks.md, "What each change
did").
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, commit): the versions compared; None is the code in this checkout.
VERSIONS = [
    ("before: core channel layer, legacy websockets with deflate", "e063ca4"),
    ("+ pub/sub layer, sans-I/O websockets, no deflate, no per-message DB clean-up", "696e367"),
    ("+ session read once, batched receive, events published together (this checkout)", None),
]


def checkout(commit: str, workdir: Path) -> tuple[str, Path]:
    """A worktree of `commit` and a venv with it installed: (python executable, worktree)."""
    tree, venv = workdir / f"tree-{commit}", workdir / f"venv-{commit}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), commit],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # This venv's packages, behind the new venv's own (only the project itself is installed there).
    (next(venv.glob("lib/python*/site-packages")) / "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "-e", str(tree)],
                   check=True, capture_output=True, timeout=600)
    return python, tree


def remove(tree: Path) -> None:
    """Forget a worktree made by checkout()."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True, timeout=120)
