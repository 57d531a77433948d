#!/usr/bin/env bash
# Builds the solution and runs every test project against the real servers (scripts/infra.sh up
# must have run; `make test` does it). Ends with one line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source .local/infra.env

results=.local/test-results
rm -rf "$results"
mkdir -p "$results"

# The chart and compose checks need node and npm; a fresh Debian machine may have neither.
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if ! dotnet build Crm.Platform.sln -c Release -nologo -clp:ErrorsOnly; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# One run per test project, each with its own trx file (a shared name would let one overwrite another).
# Projects share no state (each fixture makes its own database, virtual host and key prefix), so they
# run side by side; the fault tests, which kill processes and a broker node of their own against
# deadlines, run first and alone. Each project's console output is printed when it ends.
rc=0
run_project() {
  local project=$1 name
  name=$(basename "$project" .csproj)
  dotnet test "$project" -c Release --no-build -nologo \
    --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=minimal" --results-directory "$results" >"$results/$name.log" 2>&1
  local status=$?
  cat "$results/$name.log"
  return $status
}
projects=$(find tests -name '*.Tests.csproj' | sort)
for project in $(grep '/Faults.Tests/' <<<"$projects"); do run_project "$project" || rc=$?; done
pids=()
for project in $(grep -v '/Faults.Tests/' <<<"$projects"); do run_project "$project" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done

passed=0
failed=0
shopt -s nullglob
for trx in "$results"/*.trx; do
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done
# A recap of failures at the end, where a reader of the last lines of CI output will see it.
for trx in "$results"/*.trx; do
  awk '
    /<UnitTestResult / && /outcome="Failed"/ { match($0, /testName="[^"]*"/); name = substr($0, RSTART + 10, RLENGTH - 11); want = 1 }
    want && /<Message>/ { msg = $0; sub(/.*<Message>/, "", msg); sub(/<\/Message>.*/, "", msg);
                          printf "FAILED %s: %s\n", name, substr(msg, 1, 400); want = 0 }
  ' "$trx"
done
# The Helm chart: helm lint + template, every manifest validated against the Kubernetes schemas, the
# values schema refusing wrong types, and its database provisioning SQL run against PostgreSQL.
if scripts/chart-check.sh; then passed=$((passed + 1)); else echo "chart check failed"; failed=$((failed + 1)); fi
# The compose files: parsed and cross-checked against the services' code (settings, ports, routes).
if scripts/compose-check.sh; then passed=$((passed + 1)); else echo "compose check failed"; failed=$((failed + 1)); fi

# A crashed test host reports no failures in its trx but a non-zero exit: count it.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
