#!/usr/bin/env bash
# Starts one vljax process of a multi-process job on this host, for schedulers without a vljax script.
# Run it once per process (every host, or every GPU), all with the same coordinator and count:
#
#   tpu_scripts/multinode.sh --coordinator host0:12355 --num-processes 4 --process-id "$RANK" [--dry-run] \
#       -- vljax train --config configs/clip.py:base --workdir /shared/runs/clip_b16
#
# It sets VLJAX_COORDINATOR / VLJAX_NUM_PROCESSES / VLJAX_PROCESS_ID, which
# vljax.sharding.maybe_initialize_distributed passes to jax.distributed.initialize. Each process
# uses all devices it can see; restrict with CUDA_VISIBLE_DEVICES for one process per GPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COORD="" NUM="" PID=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --coordinator) COORD=$(flag_value "$@"); shift 2 ;;
    --num-processes) NUM=$(flag_value "$@"); shift 2 ;;
    --process-id) PID=$(flag_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown flag $1 (put the command after --)" ;;
  esac
done
need "$COORD" coordinator; need "$NUM" num-processes; need "$PID" process-id
[[ "$COORD" == *:* ]] || die "--coordinator must be HOST:PORT, got $COORD"
[[ "$NUM" =~ ^[1-9][0-9]*$ ]] || die "--num-processes must be a positive integer, got $NUM"
[[ "$PID" =~ ^[0-9]+$ && "$PID" -lt "$NUM" ]] || die "--process-id must be in [0, $NUM), got $PID"
[[ $# -gt 0 ]] || die "no command given after --"
run env "VLJAX_COORDINATOR=$COORD" "VLJAX_NUM_PROCESSES=$NUM" "VLJAX_PROCESS_ID=$PID" "$@"
