#!/usr/bin/env bash
# Copy a finished coordination study's small files into a folder to commit (e.g. results/<study>):
# each finished run's config, logs, CSVs and summary; every coordinator's checkpoint exported
# without its agents (`duo-ai export --without-agents`, ~10-20 KB) at the path the reports name
# (best_val_true.ckpt or, in the realistic setting, best_val_sim.ckpt where there is one, else
# last.ckpt); the evaluations and reports (every
# evals* and report* folder), the ask maps (ask_map/), the study's record (study.yaml) and the
# jobs' logs (logs/). The agents the study trained (its novice/, expert/ and sim_novice/ runs) are
# exported once, with their weights and configs only, to DST/agents/<role>.ckpt.
#
#   scripts/collect_study.sh experiments/coordination_coinrun results/coordination_coinrun
#
# Existing checkpoints in DST are replaced by fresh exports; nothing outside DST is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: scripts/collect_study.sh STUDY_DIR DEST_DIR" >&2; exit 2; }
src=$1 dst=$2
[ -d "$src" ] || { echo "collect_study: $src is not a folder; pass the study's --out folder" >&2; exit 2; }
if [ -x .venv/bin/duo-ai ]; then DUO=.venv/bin/duo-ai; else DUO=duo-ai; fi
for path in "$src"/*/; do
  run=$(basename "$path")
  case $run in evals*|report*|logs) continue ;; esac
  if [ ! -f "$src/$run/summary.json" ]; then echo "skipping $run: not finished"; continue; fi
  mkdir -p "$dst/$run"
  # Only coordinators (their config names a novice) are exported, before the run's own files are
  # copied beside them (export never writes into a run folder); the agents' weights are not.
  if ! grep -q '^train_novice: null$' "$src/$run/config.yaml"; then
    ckpt=last.ckpt
    for best in best_val_true.ckpt best_val_sim.ckpt; do
      if [ -f "$src/$run/$best" ]; then ckpt=$best; fi
    done
    rm -f "$dst/$run/config.yaml" "$dst/$run/run_info.json" "$dst/$run/$ckpt"
    "$DUO" export "$src/$run/$ckpt" -o "$dst/$run/$ckpt" --without-agents >/dev/null
    echo "exported $run/$ckpt"
  fi
  for f in config.yaml summary.json train.log progress.csv eval.csv run_info.json base_penalty.json; do
    if [ -f "$src/$run/$f" ]; then cp "$src/$run/$f" "$dst/$run/"; fi
  done
done
for role in novice expert sim_novice; do
  if [ -f "$src/$role/last.ckpt" ] && [ ! -f "$dst/agents/$role.ckpt" ]; then
    mkdir -p "$dst/agents"
    "$DUO" export "$src/$role/last.ckpt" -o "$dst/agents/$role.ckpt" >/dev/null
    echo "exported the $role to agents/$role.ckpt"
  fi
done
for d in "$src"/evals* "$src"/report* "$src"/ask_map "$src"/logs; do  # evals, evals_auc, report, report_auc, ...
  if [ -d "$d" ]; then cp -r "$d" "$dst/"; fi
done
for f in table.json study.yaml; do  # the study's table and what ran
  if [ -f "$src/$f" ]; then cp "$src/$f" "$dst/"; fi
done
du -sh "$dst"
