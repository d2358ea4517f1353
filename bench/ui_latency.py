"""UI latency of the Jupyter explorer (issue 7): time to first frame, and update overhead.

Prints (1) the time from pressing Run to the first frame shown in the LiFlow tab on the
default material, and (2) the wall time of the same rollout run bare (no UI) and through
the tab with live figure updates, and their ratio (target: ≤ 1.2).

Uses the first bundled LiFlow checkpoint, else the demo random-walk model (whose steps
are mostly sleep, so its ratio says little about CPU contention; say which in reports).

    OMP_NUM_THREADS=1 .venv/bin/python bench/ui_latency.py [--steps 30] [--poll 0.5]
        [--checkpoint-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.session import Rollout
from widgets.liflow_tab import LiFlowTab
from widgets.runs import build_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="LiFlow steps per run")
    parser.add_argument("--poll", type=float, default=1.0, help="figure update interval, s")
    parser.add_argument("--flow-steps", type=int, default=10)
    parser.add_argument("--checkpoint-dir", type=Path, default=CHECKPOINT_DIR)
    args = parser.parse_args()

    started = time.perf_counter()
    tab = LiFlowTab(checkpoint_dir=args.checkpoint_dir, poll_interval_s=args.poll)
    print(f"tab built in {time.perf_counter() - started:.2f} s")
    print(f"model: {tab.choice.label}; material: {tab.material.value}, {len(tab.atoms)} atoms")
    tab.flow_steps.value = args.flow_steps
    tab.n_steps.value = 1
    tab.run_button.click()  # warm-up: loads the model once (cached afterwards)
    tab.wait()

    tab.n_steps.value = args.steps
    tab.run_button.click()
    tab.wait()
    first = tab.timings["first_frame"] - tab.timings["clicked"]
    with_ui = tab.rollout.progress().wall_s
    print(f"time to first frame after Run: {first:.2f} s (target < 2 s)")

    simulator, atoms, knobs = build_run(tab.choice, tab.atoms, tab.knobs())
    bare = Rollout(simulator, atoms, args.steps, knobs)
    bare.run()
    without_ui = bare.progress().wall_s
    print(
        f"{args.steps} steps: bare {without_ui:.2f} s, with live figures {with_ui:.2f} s, "
        f"ratio {with_ui / without_ui:.2f} (target ≤ 1.20)"
    )


if __name__ == "__main__":
    main()
