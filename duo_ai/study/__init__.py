"""`duo-ai study`: the coordination benchmark's protocol, end to end, from one study file.

A study file (YAML under `configs/studies/`, layered with `defaults: [...]` like the run configs)
says what to train and evaluate; `schema` reads and checks it, `jobs` runs the `duo-ai train` /
`duo-ai eval` / `duo-ai study-report` subprocesses (in turn, or a few at once with a log each), and
`protocol` is the protocol's stages: agents, gate, baselines, PPO per weight, evaluations, reports.
"""
