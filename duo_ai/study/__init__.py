"""`duo-ai study` and `duo-ai study-report`: the coordination benchmark's protocol, end to end, from
one study file, and its report.

A study file (YAML under `configs/studies/`, layered with `defaults: [...]` like the run configs)
says what to train and evaluate; `schema` reads and checks it, `jobs` runs the `duo-ai train` /
`duo-ai eval` / `duo-ai study-report` jobs (in turn, or a few at once with a log each), which a
launcher starts (`launchers`: subprocesses here; `slurm`: Slurm jobs through submitit), and
`protocol` is the protocol's stages: agents, gate, baselines, PPO per weight, evaluations, reports.
`evals` reads a study's evaluations (every method on the same episodes, at every weight) and
`report` compares the methods on them: `table.json`, the figure and the terminal tables.
"""
