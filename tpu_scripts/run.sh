#!/usr/bin/env bash
# Runs the same command on all workers of all slices (in ~/vljax, logging to ~/vljax.log), in the background.
#
#   tpu_scripts/run.sh --name vljax-v5p --zone us-east5-a [--slices 2] [--project P] [--dry-run] \
#       -- vljax train --config configs/clip.py:base --workdir gs://bucket/runs/clip_b16
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" SLICES=1 PROJECT="${PROJECT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$(flag_value "$@"); shift 2 ;;
    --zone) ZONE=$(flag_value "$@"); shift 2 ;;
    --slices) SLICES=$(flag_value "$@"); shift 2 ;;
    --project) PROJECT=$(flag_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) die "unknown flag $1 (put the command after --)" ;;
  esac
done
need "$NAME" name; need "$ZONE" zone
[[ $# -gt 0 ]] || die "no command given after --"

cmd=$(quote "$@")
# NOTE: every worker must start the same program: jax.distributed.initialize() (called by vljax on
# a pod) blocks until all processes join, so one worker left out hangs the others.
remote="cd ~/vljax && nohup $cmd > ~/vljax.log 2>&1 &"
project=()
[[ -n "$PROJECT" ]] && project=("--project=$PROJECT")
while read -r node; do
  run gcloud compute tpus tpu-vm ssh "$node" "--zone=$ZONE" --worker=all "${project[@]}" "--command=$remote"
done < <(node_names "$NAME" "$SLICES")
