"""jobcast's real worker app with one more task, which holds a pool process for a while and
needs no database: what tests/integration/test_broker_loss.py runs through a broker loss."""

import time
from pathlib import Path

from jobcast.worker.app import app


@app.task(name="tests.hold")
def hold(seconds: float, runs: str) -> None:
    """Note the run's start in the file `runs`, sleep, then note its end."""
    with open(runs, "a") as out:
        out.write("started\n")
    time.sleep(seconds)
    with open(runs, "a") as out:
        out.write("ended\n")


def runs_of(path: Path) -> list[str]:
    """What the `hold` runs noted in `path` (one line per start and end)."""
    return path.read_text().split() if path.exists() else []
