#!/usr/bin/env bash
# Requests a TPU VM slice (or a multi-slice set) as a queued resource and optionally waits until ACTIVE.
#
#   tpu_scripts/create.sh --name vljax-v5p --zone us-east5-a --type v5p-64 \
#       --runtime v2-alpha-tpuv5 [--slices 2] [--spot] [--project P] [--wait] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME="" ZONE="" TYPE="" RUNTIME="" SLICES=1 SPOT=0 WAIT=0 PROJECT="${PROJECT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=$(flag_value "$@"); shift 2 ;;
    --zone) ZONE=$(flag_value "$@"); shift 2 ;;
    --type) TYPE=$(flag_value "$@"); shift 2 ;;
    --runtime) RUNTIME=$(flag_value "$@"); shift 2 ;;
    --slices) SLICES=$(flag_value "$@"); shift 2 ;;
    --project) PROJECT=$(flag_value "$@"); shift 2 ;;
    --spot) SPOT=1; shift ;;
    --wait) WAIT=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown flag $1" ;;
  esac
done
need "$NAME" name; need "$ZONE" zone; need "$TYPE" type; need "$RUNTIME" runtime
[[ "$SLICES" =~ ^[1-9][0-9]*$ ]] || die "--slices must be a positive integer, got $SLICES"

args=(gcloud compute tpus queued-resources create "$NAME" "--zone=$ZONE" "--accelerator-type=$TYPE"
      "--runtime-version=$RUNTIME")
[[ -n "$PROJECT" ]] && args+=("--project=$PROJECT")
if [[ "$SLICES" -gt 1 ]]; then
  # NOTE: multi-slice: the nodes are NAME-0..NAME-(k-1), joined over DCN; the runtime sets the
  # MEGASCALE_* variables that jax.distributed reads, so the run command is unchanged.
  args+=("--node-count=$SLICES" "--node-prefix=$NAME")
else
  args+=("--node-id=$NAME")
fi
[[ "$SPOT" == 1 ]] && args+=(--spot)
run "${args[@]}"

if [[ "$WAIT" == 1 ]]; then
  describe=(gcloud compute tpus queued-resources describe "$NAME" "--zone=$ZONE" "--format=value(state.state)")
  [[ -n "$PROJECT" ]] && describe+=("--project=$PROJECT")
  if [[ "$DRY_RUN" == 1 ]]; then
    run "${describe[@]}"
  else
    until state=$("${describe[@]}") && [[ "$state" == ACTIVE ]]; do
      [[ "$state" == FAILED || "$state" == SUSPENDED ]] && die "queued resource $NAME is $state"
      echo "queued resource $NAME: ${state:-unknown}; waiting" >&2
      sleep 30
    done
  fi
fi
