#!/usr/bin/env bash
# Builds the solution and runs every test project against the real servers (scripts/infra.sh up
# must have run; `make test` does it). Ends with one line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source .local/infra.env

results=.local/test-results
rm -rf "$results"
mkdir -p "$results"

if ! dotnet build Crm.Platform.sln -c Release -nologo -clp:ErrorsOnly; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test Crm.Platform.sln -c Release --no-build -nologo \
  --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results"
rc=$?

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
# A crashed test host reports no failures in its trx but a non-zero exit: count it.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
