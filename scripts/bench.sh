#!/usr/bin/env bash
# Every benchmark, each printing one line "bench <name>: <value> <unit>, <ratio>x of <baseline>"
# against a baseline measured in the same run on the same machine. `make bench` runs it after
# scripts/infra.sh up. Diagnostics go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source .local/infra.env
dotnet build Crm.Platform.sln -c Release -nologo -clp:ErrorsOnly >/dev/null
CRM_REPO_ROOT="$PWD" dotnet bench/Crm.Bench/bin/Release/net10.0/Crm.Bench.dll "${@:-all}"
