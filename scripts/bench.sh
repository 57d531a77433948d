#!/usr/bin/env bash
# Every benchmark, each printing one line "bench <name>: <value> <unit>, <ratio>x of <baseline>"
# against a baseline measured in the same run on the same machine. `make bench` runs it after
# scripts/infra.sh up. Diagnostics go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source .local/infra.env
dotnet build Crm.Platform.sln -c Release -nologo -clp:ErrorsOnly >/dev/null
# Runtime settings for this box, not the services' defaults (production keeps tiered compilation,
# the server GC the web SDK picks, and the thread pool's spinning). Inherited by the harness and by
# the services it starts:
# - tiered compilation off: a bench run lasts seconds, and the tiers (and dynamic PGO's instrumented
#   tier) were still recompiling the hot paths during warmed-up runs, a fifth of the import's CPU;
# - workstation GC: import-memory compares peak RSS with the idle service, which server GC's heaps
#   per core would blur;
# - no spinning of idle thread-pool workers: on two cores shared with PostgreSQL and RabbitMQ the
#   spinning took CPU from the servers being measured against.
export DOTNET_TieredCompilation=0 DOTNET_gcServer=0 DOTNET_gcConcurrent=1 DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0
CRM_REPO_ROOT="$PWD" dotnet bench/Crm.Bench/bin/Release/net10.0/Crm.Bench.dll "${@:-all}"
