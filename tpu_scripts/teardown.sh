#!/usr/bin/env bash
# Deletes the queued resource and its TPU VMs (all slices).
#
#   tpu_scripts/teardown.sh --name vljax-v5p --zone us-east5-a [--project P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" PROJECT="${PROJECT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$(flag_value "$@"); shift 2 ;;
    --zone) ZONE=$(flag_value "$@"); shift 2 ;;
    --project) PROJECT=$(flag_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown flag $1" ;;
  esac
done
need "$NAME" name; need "$ZONE" zone
args=(gcloud compute tpus queued-resources delete "$NAME" "--zone=$ZONE" --force --quiet)
[[ -n "$PROJECT" ]] && args+=("--project=$PROJECT")
# NOTE: --force also deletes the TPU VMs the request created; without it an ACTIVE request refuses.
run "${args[@]}"
