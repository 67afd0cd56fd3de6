#!/usr/bin/env bash
# Prints the tests that failed in the last ctest run of each build directory given, each with the
# end of its output. CI calls it last, so that the reason for a red run is in the final lines of
# the log rather than somewhere in the middle of it. ctest leaves LastTestsFailed.log behind after a
# later green run, so a test is shown only if the last run's log has it, and not as passed.
# Usage: scripts/failed_tests.sh BUILD_DIR...
set -uo pipefail
lines=${COMM_FAILED_TEST_LINES:-40}
for build in "$@"; do
  failed=$build/Testing/Temporary/LastTestsFailed.log
  log=$build/Testing/Temporary/LastTest.log
  [[ -s $failed && -f $log ]] || continue
  header=0
  while IFS=: read -r number name; do
    # The test's section of the log: from "N/M Testing: ..." up to its end-time line.
    section=$(awk -v n="$number" '
      $0 ~ "^" n "/[0-9]+ Testing: " { on = 1 }
      on { print }
      on && / end time: / { exit }
    ' "$log")
    [[ -n $section ]] || continue                        # not in the last run
    grep -qx 'Test Passed.' <<<"$section" && continue    # failed in an older run, passed since
    ((header++)) || echo "== failed tests in $build =="
    echo "-- #$number: $name"
    grep -v -e '^Command: ' -e '^Directory: ' <<<"$section" | tail -n "$lines"
  done < "$failed"
done
