#!/usr/bin/env bash
# Shared helpers for tpu_scripts/*.sh: flag parsing checks and --dry-run aware command execution.
# Sourced, not executed.

DRY_RUN=${DRY_RUN:-0}

die() {
  echo "error: $*" >&2
  exit 2
}

# need VALUE NAME: fails naming the flag when its value is missing.
need() {
  [[ -n "$1" ]] || die "missing required flag --$2"
}

# flag_value FLAG "$@": the value after FLAG, or an error naming it.
flag_value() {
  [[ $# -ge 2 && "$2" != --* ]] || die "flag $1 needs a value"
  printf '%s' "$2"
}

# quote ARGS...: one shell-quoted line (single quotes only where needed), like Python's shlex.join.
quote() {
  local out="" arg q="'\\''"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/$q}' "
    fi
  done
  printf '%s' "${out% }"
}

# run CMD ARGS...: prints the command shell-quoted (exactly what runs), executes it unless --dry-run.
run() {
  local line
  line=$(quote "$@")
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "$line"
  else
    echo "+ $line" >&2
    "$@"
  fi
}


# node_names NAME NUM_SLICES: the TPU VM node ids of a queued resource (NAME, or NAME-0..NAME-(k-1)).
node_names() {
  local name=$1 slices=$2 i
  if [[ "$slices" -le 1 ]]; then
    echo "$name"
  else
    for ((i = 0; i < slices; i++)); do echo "${name}-${i}"; done
  fi
}
