"""UI latency of the Jupyter explorer (issue 7): time to first frame, and update overhead.

Prints (1) the time from pressing Run to the start structure shown and to the views of
the first simulated frame in the LiFlow tab on the default material (target < 2 s), and
(2) the wall time of the same rollout run bare (no UI) and through the tab with live
figure updates, and their ratio (target: ≤ 1.2), for ``--repeats`` alternated pairs
(the median counts: other load on the machine moves single runs by ±30 %).

Uses the first bundled LiFlow checkpoint, else the demo random-walk model (whose steps
are mostly sleep, so its ratio says little about CPU contention; say which in reports).

    OMP_NUM_THREADS=1 .venv/bin/python bench/ui_latency.py [--steps 30] [--poll 0.5] [--repeats 3]
        [--checkpoint-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from explorer.checkpoints import CHECKPOINT_DIR
from explorer.session import Rollout
from widgets.liflow_tab import LiFlowTab
from widgets.runs import build_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="LiFlow steps per run")
    parser.add_argument("--poll", type=float, default=0.5, help="figure update interval, s")
    parser.add_argument("--flow-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="bare/UI pairs, alternated")
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
    simulator, atoms, knobs = build_run(tab.choice, tab.atoms, tab.knobs())
    updates: list[int] = []
    compute = tab._compute

    def counting_compute(*compute_args):  # counts the view updates of a run
        updates[-1] += 1
        return compute(*compute_args)

    tab._compute = counting_compute
    bare_s, ui_s, first_s, first_step_s = [], [], [], []
    for _ in range(args.repeats):
        updates.append(0)
        bare = Rollout(simulator, atoms, args.steps, knobs)
        bare.run()
        bare_s.append(bare.progress().wall_s)
        tab.run_button.click()
        tab.wait()
        ui_s.append(tab.rollout.progress().wall_s)
        first_s.append(tab.timings["first_frame"] - tab.timings["clicked"])
        first_step_s.append(tab.timings["first_step"] - tab.timings["clicked"])
    print(
        f"Run → start structure shown: median {statistics.median(first_s):.2f} s; "
        f"→ first simulated frame's views: median {statistics.median(first_step_s):.2f} s "
        f"(each: {_fmt(first_step_s)}; target < 2 s)"
    )
    ratios = [ui / bare for ui, bare in zip(ui_s, bare_s, strict=True)]
    print(f"{args.steps} steps bare: {_fmt(bare_s)} s; with live figures: {_fmt(ui_s)} s")
    print(f"ratio UI/bare: {_fmt(ratios)}, median {statistics.median(ratios):.2f} (target ≤ 1.20)")
    print(
        f"figure updates per run: {', '.join(map(str, updates))} for {args.steps} steps "
        "(target: at least one per step; the start frame counts as one)"
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
