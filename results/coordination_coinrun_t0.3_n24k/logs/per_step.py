"""What each method's expert steps are worth: (its base reward - always-novice's) / its expert steps
per episode, on one set of paired evaluations. Usage: per_step.py EVALS_DIR WEIGHT"""

import json
import sys
from pathlib import Path

evals, weight = Path(sys.argv[1]), sys.argv[2]
novice = json.loads((evals / "always_novice" / "w0.json").read_text())["base_reward_mean"]
for method in sorted(p.name for p in evals.iterdir() if p.is_dir() and p.name != "always_novice"):
    file = evals / method / ("w0.json" if method.startswith("always") else f"w{weight}.json")
    d = json.loads(file.read_text())
    cost = float(weight) * d["base_penalty"]
    worth = (d["base_reward_mean"] - novice) / d["expert_steps_mean"]
    print(
        f"{method}: base reward {d['base_reward_mean']:.3f}, {d['expert_steps_mean']:.1f} expert steps per episode, "
        f"each worth {worth:.4f} (a step costs {cost:.4f})"
    )
