#!/usr/bin/env bash
# Copies this checkout to every worker of every slice and installs it (with jax[tpu]).
#
#   tpu_scripts/install.sh --name vljax-v5p --zone us-east5-a [--slices 2] [--project P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" SLICES=1 PROJECT="${PROJECT:-}"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$(flag_value "$@"); shift 2 ;;
    --zone) ZONE=$(flag_value "$@"); shift 2 ;;
    --slices) SLICES=$(flag_value "$@"); shift 2 ;;
    --project) PROJECT=$(flag_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown flag $1" ;;
  esac
done
need "$NAME" name; need "$ZONE" zone

TARBALL=/tmp/vljax-src.tgz
# NOTE: a tarball of the working tree (not a git clone) so uncommitted experiment configs travel too.
run tar czf "$TARBALL" --exclude=.venv --exclude=runs --exclude=.git --exclude=__pycache__ -C "$REPO" .
project=()
[[ -n "$PROJECT" ]] && project=("--project=$PROJECT")
remote='mkdir -p ~/vljax && tar xzf ~/vljax-src.tgz -C ~/vljax && python3 -m pip install -U "jax[tpu]" && python3 -m pip install -e ~/vljax'
while read -r node; do
  run gcloud compute tpus tpu-vm scp "$TARBALL" "$node:~/vljax-src.tgz" "--zone=$ZONE" --worker=all "${project[@]}"
  run gcloud compute tpus tpu-vm ssh "$node" "--zone=$ZONE" --worker=all "${project[@]}" "--command=$remote"
done < <(node_names "$NAME" "$SLICES")
