#!/usr/bin/env bash
# This checkout's identity-token key pair (ES256, ECDSA P-256), made once under .local/token-keys:
#   signing-key.pem  the private key: the gateway and the CLI (`crm token`) only, never the services
#   public-key.pem   what the services verify with
#   key-id           the kid naming it (local-<first 12 hex of the public key's SHA-256>)
#   campaigns-key.pem, campaigns-public-key.pem, campaigns-key-id
#                    Campaigns' workload key: it signs Campaigns' own calls to Segmentation and Delivery,
#                    which accept it only for the scopes they list with it (segments.read; delivery.send/read)
# `scripts/token-keys.sh env` prints the exports that the CLI and docker/compose.platform.yaml read:
#   eval "$(scripts/token-keys.sh env)"
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.local/token-keys
if [ ! -s "$dir/signing-key.pem" ]; then
  command -v openssl >/dev/null || { echo "token-keys: needs openssl" >&2; exit 1; }
  mkdir -p "$dir" && chmod 700 "$dir"
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/signing-key.pem")
  openssl pkey -in "$dir/signing-key.pem" -pubout -out "$dir/public-key.pem"
  echo "local-$(openssl pkey -in "$dir/signing-key.pem" -pubout -outform DER | sha256sum | cut -c1-12)" >"$dir/key-id"
fi
if [ ! -s "$dir/campaigns-key.pem" ]; then
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/campaigns-key.pem")
  openssl pkey -in "$dir/campaigns-key.pem" -pubout -out "$dir/campaigns-public-key.pem"
  echo "campaigns-$(openssl pkey -in "$dir/campaigns-key.pem" -pubout -outform DER | sha256sum | cut -c1-12)" >"$dir/campaigns-key-id"
fi
if [ "${1:-}" = env ]; then
  printf 'export CRM_SIGNING_KEY=%q\n' "$(cat "$dir/signing-key.pem")"
  printf 'export CRM_SIGNING_KEY_ID=%q\n' "$(cat "$dir/key-id")"
  printf 'export CRM_PUBLIC_KEY=%q\n' "$(cat "$dir/public-key.pem")"
  printf 'export CRM_CAMPAIGNS_KEY=%q\n' "$(cat "$dir/campaigns-key.pem")"
  printf 'export CRM_CAMPAIGNS_KEY_ID=%q\n' "$(cat "$dir/campaigns-key-id")"
  printf 'export CRM_CAMPAIGNS_PUBLIC_KEY=%q\n' "$(cat "$dir/campaigns-public-key.pem")"
fi
