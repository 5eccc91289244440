#!/usr/bin/env bash
# Streams ~/vljax.log of one worker (default 0: the process that prints progress and writes reports).
#
#   tpu_scripts/logs.sh --name vljax-v5p --zone us-east5-a [--worker 0|all] [--slice 0] [--project P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" WORKER=0 SLICE="" PROJECT="${PROJECT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$(flag_value "$@"); shift 2 ;;
    --zone) ZONE=$(flag_value "$@"); shift 2 ;;
    --worker) WORKER=$(flag_value "$@"); shift 2 ;;
    --slice) SLICE=$(flag_value "$@"); shift 2 ;;
    --project) PROJECT=$(flag_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown flag $1" ;;
  esac
done
need "$NAME" name; need "$ZONE" zone
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+$ ]] || die "--worker must be a worker index or 'all', got $WORKER"
node="$NAME"
[[ -n "$SLICE" ]] && node="${NAME}-${SLICE}"
project=()
[[ -n "$PROJECT" ]] && project=("--project=$PROJECT")
run gcloud compute tpus tpu-vm ssh "$node" "--zone=$ZONE" "--worker=$WORKER" "${project[@]}" \
  "--command=tail -n 200 -F ~/vljax.log"
