# Sourced by scripts/test and scripts/test-lowest: `timed LABEL COMMAND...` runs COMMAND in
# this shell (so `timed ... . scripts/venv.sh` activates), then prints how long it took.
# EPOCHREALTIME (bash 5) has microseconds; its decimal mark follows the locale.
timed() {
    local label=$1 started=${EPOCHREALTIME/[.,]/}
    shift
    "$@"
    local tenths=$(( (${EPOCHREALTIME/[.,]/} - started) / 100000 ))
    echo "=== $label: $((tenths / 10)).$((tenths % 10)) s" >&2
}
