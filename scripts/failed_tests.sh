#!/usr/bin/env bash
# Prints the tests that failed in the last ctest run of each build directory given, each with the
# end of its output. CI calls it last, so that the reason for a red run is in the final lines of
# the log rather than somewhere in the middle of it.
# Usage: scripts/failed_tests.sh BUILD_DIR...
set -uo pipefail
lines=${COMM_FAILED_TEST_LINES:-40}
for build in "$@"; do
  failed=$build/Testing/Temporary/LastTestsFailed.log
  log=$build/Testing/Temporary/LastTest.log
  [[ -s $failed && -f $log ]] || continue
  echo "== failed tests in $build =="
  while IFS=: read -r number name; do
    echo "-- #$number: $name"
    # The test's section of the log: from "N/M Testing: ..." up to its end-time line.
    awk -v n="$number" '
      $0 ~ "^" n "/[0-9]+ Testing: " { on = 1 }
      on { print }
      on && / end time: / { exit }
    ' "$log" | grep -v -e '^Command: ' -e '^Directory: ' | tail -n "$lines"
  done < "$failed"
done
