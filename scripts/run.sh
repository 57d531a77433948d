#!/usr/bin/env bash
# make run: servers up (scripts/infra.sh), databases created, services built and started,
# the demo workspace filled, and how to call it printed. Ctrl-C stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
source .local/infra.env
mkdir -p .local/logs

# One identity-token key pair per checkout (never a built-in default): the private key signs (the
# gateway, the CLI), the services get only the public key, so none of them can mint an identity.
scripts/token-keys.sh
export CRM_SIGNING_KEY_FILE=$PWD/.local/token-keys/signing-key.pem CRM_SIGNING_KEY_ID=$(cat .local/token-keys/key-id)
PUBLIC_KEY=(Tenancy__PublicKeys__0__KeyId="$CRM_SIGNING_KEY_ID" Tenancy__PublicKeys__0__Pem="$(cat .local/token-keys/public-key.pem)")
# The key Delivery encrypts provider credentials with (base64 of 32 bytes); losing it loses them.
[ -s .local/provider-secret-key ] || head -c 32 /dev/urandom | base64 > .local/provider-secret-key
# The key of erased identities' hashes in Contacts (base64 of 32 bytes).
[ -s .local/suppression-key ] || head -c 32 /dev/urandom | base64 > .local/suppression-key

pg_field() { sed -n "s/.*$1=\([^;]*\).*/\1/p" <<<"$CRM_POSTGRES"; }
export PGHOST=$(pg_field Host) PGPORT=$(pg_field Port) PGUSER=$(pg_field Username) PGPASSWORD=$(pg_field Password)
# A database per service, migrated by its owner (here the server's admin), and a login role per service
# that owns no table: the services run as it, so row-level security binds every query they make.
for db in crm_contacts crm_delivery crm_segmentation; do
  psql -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 || psql -d postgres -qc "CREATE DATABASE $db"
  psql -d postgres -Atqc "SELECT 1 FROM pg_roles WHERE rolname = '$db'" | grep -q 1 \
    || psql -d postgres -qc "CREATE ROLE $db LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
done
# ConnectionStrings for a service: runtime as its own role, migrations as the owner.
db_settings() { echo "ConnectionStrings__Postgres=Host=$PGHOST;Port=$PGPORT;Username=$1;Database=$1" "ConnectionStrings__PostgresMigrations=$CRM_POSTGRES;Database=$1"; }

# Our fixed ports must be free (a `make run` still running elsewhere would answer the demo instead).
for port in 5100 5101 5200 5201 5300 5301 8080 8081 5990 5991 2525; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (is another \`make run\` still running?); stop it and try again" >&2
    exit 1
  fi
done

echo "building…"
dotnet build Crm.Platform.sln -c Release -nologo -clp:ErrorsOnly >/dev/null

pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop EXIT INT TERM

# start <name> <assembly dir> <grpc port> <http port> [env...]
start() {
  local name=$1 dir=$2 grpc=$3 http=$4; shift 4
  env ASPNETCORE_ENVIRONMENT=Development \
      Kestrel__Endpoints__Grpc__Url="http://127.0.0.1:$grpc" Kestrel__Endpoints__Http__Url="http://127.0.0.1:$http" \
      ConnectionStrings__RabbitMq="$CRM_RABBITMQ" "$@" \
      dotnet "$dir" >".local/logs/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$http/health/ready" >/dev/null && { echo "$name ready: gRPC 127.0.0.1:$grpc, health http://127.0.0.1:$http/health/ready"; return; }
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "$name failed to start:"; tail -20 ".local/logs/$name.log"; exit 1; }
    sleep 0.5
  done
  echo "$name did not become ready"; tail -20 ".local/logs/$name.log"; exit 1
}

start contacts services/Contacts/bin/Release/net10.0/Crm.Contacts.dll 5101 5100 "${PUBLIC_KEY[@]}" $(db_settings crm_contacts) \
  Contacts__SuppressionKey="$(cat .local/suppression-key)"

start delivery services/Delivery/bin/Release/net10.0/Crm.Delivery.dll 5201 5200 "${PUBLIC_KEY[@]}" \
  $(db_settings crm_delivery) ConnectionStrings__Redis="$CRM_REDIS" \
  Delivery__SecretKey="$(cat .local/provider-secret-key)" Delivery__RedisKeyPrefix="demo:" \
  Delivery__AllowPrivateProviderAddresses=true # the Twilio and SMTP fakes are on loopback

# Segmentation: projections of Contacts' and Delivery's events, segments, RFM; it reads Contacts' exports to backfill.
start segmentation services/Segmentation/bin/Release/net10.0/Crm.Segmentation.dll 5301 5300 "${PUBLIC_KEY[@]}" \
  $(db_settings crm_segmentation) ConnectionStrings__Contacts="http://127.0.0.1:5101"

# The gateway: REST and gRPC for every service on one address, API keys exchanged for identity tokens.
start gateway services/Gateway/bin/Release/net10.0/Crm.Gateway.dll 8081 8080 \
  Tenancy__SigningKey="$(cat "$CRM_SIGNING_KEY_FILE")" Tenancy__SigningKeyId="$CRM_SIGNING_KEY_ID" \
  Gateway__ContactsGrpc="http://127.0.0.1:5101" ConnectionStrings__Redis="$CRM_REDIS" Gateway__RedisKeyPrefix="demo:" \
  ReverseProxy__Clusters__segmentation-http__Destinations__segmentation__Address="http://127.0.0.1:5300" \
  ReverseProxy__Clusters__segmentation-grpc__Destinations__segmentation__Address="http://127.0.0.1:5301"

crm() { dotnet tools/Crm.Cli/bin/Release/net10.0/crm.dll "$@"; }
# The outside world, on loopback: a Twilio Messages API, an SMTP server and an NHN Cloud KakaoTalk API that print what they get.
crm fakes --twilio-port 5990 --smtp-port 2525 --kakao-port 5991 >.local/logs/fakes.log 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do grep -q "fake SMTP" .local/logs/fakes.log 2>/dev/null && break; sleep 0.25; done

echo
echo "== demo workspace =="
crm demo --contacts http://127.0.0.1:5101 --delivery http://127.0.0.1:5201 --twilio http://127.0.0.1:5990 --smtp-port 2525 --kakao http://127.0.0.1:5991
sleep 1
echo
echo "== what the providers received (.local/logs/fakes.log) =="
grep -E "^(SMS|EMAIL)" .local/logs/fakes.log || true

echo
echo "== through the gateway (REST, an API key) =="
ADMIN_TOKEN=$(crm token --tenant demo)
API_KEY=$(curl -sf -X POST http://127.0.0.1:8080/v1/api-keys -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"name": "make run", "scopes": ["contacts.read", "contacts.write", "delivery.read", "delivery.send", "segments.read", "segments.write"]}' \
  | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
echo "API key for the demo workspace: $API_KEY"
echo "GET /v1/contacts/external/C-1001/summary:"
curl -s -w " (HTTP %{http_code})" http://127.0.0.1:8080/v1/contacts/external/C-1001/summary -H "authorization: Bearer $API_KEY"; echo

echo
echo "== who brings the money (Segmentation, gRPC through the gateway with the API key) =="
# Segmentation projects the demo's orders from Contacts' events: wait until it holds every customer order.
customer_orders() { psql -d crm_contacts -Atqc "SELECT count(*) FROM orders WHERE tenant_id = 'demo' AND contact_id IS NOT NULL"; }
projected_orders() { psql -d crm_segmentation -Atqc "SELECT count(*) FROM orders WHERE tenant_id = 'demo'"; }
# A workspace filled before Segmentation existed (an earlier make run) never sent it those events: backfill then.
expected=$(customer_orders)
for _ in $(seq 1 60); do [ "$(projected_orders)" -ge "$expected" ] && break; sleep 0.5; done
echo "Segmentation's projection: $(projected_orders) of $expected customer orders"
rebuild=no; [ "$(projected_orders)" -ge "$expected" ] || rebuild=yes
crm segments-demo --gateway http://127.0.0.1:8081 --api-key "$API_KEY" --rebuild $rebuild

cat <<MSG

== call it ==
  REST through the gateway (127.0.0.1:8080), with the API key:
  curl -H "authorization: Bearer $API_KEY" http://127.0.0.1:8080/v1/contacts/external/C-1001
  curl -H "authorization: Bearer $API_KEY" 'http://127.0.0.1:8080/v1/messages?contact_id=<contact id>'
  curl -H "authorization: Bearer $API_KEY" 'http://127.0.0.1:8080/v1/rfm/report?window_days=365'
  curl -H "authorization: Bearer $API_KEY" http://127.0.0.1:8080/v1/segments
  gRPC through the gateway (127.0.0.1:8081), the same key:
  grpcurl -plaintext -import-path proto -import-path ~/.nuget/packages/google.api.commonprotos/2.17.0/content/protos \\
    -proto crm/contacts/v1/contacts.proto -H "authorization: Bearer $API_KEY" -d '{"contact":{"external_id":"C-1001"}}' \\
    127.0.0.1:8081 crm.contacts.v1.ContactsService/GetContactSummary
  Or straight to a service with an identity token (15 minutes; it lists its API by reflection):
  export CRM_SIGNING_KEY_FILE=$CRM_SIGNING_KEY_FILE CRM_SIGNING_KEY_ID=$CRM_SIGNING_KEY_ID
  TOKEN=\$(dotnet tools/Crm.Cli/bin/Release/net10.0/crm.dll token --tenant demo --lifetime 15m)
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" 127.0.0.1:5201 crm.delivery.v1.DeliveryService/GetFrequencyCapRules
(logs in .local/logs; Ctrl-C stops the services, \`make down\` stops the servers)
MSG
wait
