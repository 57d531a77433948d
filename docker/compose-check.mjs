// Offline check of docker/compose.yaml and docker/compose.platform.yaml against the services' code, so
// that a compose file that drifts from the code fails `make test` instead of a newcomer's first
// `docker compose up` (no Docker engine needed). Run through scripts/compose-check.sh (npm ci first).
// Prints "compose check: N services consistent" or lists the problems and exits 1.
//
// For each .NET service (a compose service built with build.args.SERVICE):
//   - every setting its code requires (REQUIRED below: a pattern in the service's code and the
//     setting it makes necessary) is set, to something non-empty, and valid where the code says so;
//   - its connection strings name a compose service and a port that service listens on, its
//     PostgreSQL database is made by create-databases, and it does not connect as the superuser;
//   - the ports it publishes are the Kestrel endpoints of its appsettings.json;
//   - for the gateway: every YARP cluster of its appsettings.json gets an address here, naming a
//     compose service and its Kestrel endpoint of the right protocol (gRPC clusters: the HTTP/2 one);
//   - another service's gRPC address it is given (ConnectionStrings__<Service>: http://...) names a
//     compose service's HTTP/2 endpoint, and it depends on that service.
// For every service: depends_on names services that exist.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const files = ["compose.yaml", "compose.platform.yaml"];

// What the code requires, found by a pattern in the service's own code (services/<SERVICE>, its
// *Module.cs and Program.cs) or in the building block that pattern calls. A rule whose pattern no
// service's code matches any more fails the check: the code moved, update the rule.
const REQUIRED = [
  // services/BuildingBlocks/Data/PostgresExtensions.cs: throws without ConnectionStrings:Postgres.
  { code: /\.AddPostgres\(/, setting: "ConnectionStrings__Postgres", server: "postgres" },
  // services/BuildingBlocks/Messaging: MassTransit on RabbitMQ, ConnectionStrings:RabbitMq.
  { code: /\.AddCrmMessaging\(/, setting: "ConnectionStrings__RabbitMq", server: "rabbitmq" },
  // services/BuildingBlocks/Redis/RedisExtensions.cs: throws without ConnectionStrings:Redis.
  { code: /\.AddCrmRedis\(/, setting: "ConnectionStrings__Redis", server: "redis" },
  // services/BuildingBlocks/Tenancy (TenancyOptions): every service verifies identity tokens (AddCrmGrpc)
  // with the issuer's public key(s), the same everywhere; only the gateway (AddIdentityTokenIssuer)
  // holds the private key and its key id. Values are the key itself (PEM) or ${VARIABLE:?...}, required from the environment.
  { code: /\.AddCrmGrpc\(/, setting: "Tenancy__PublicKeys__0__Pem", shared: true, valid: (v) => /^required-from-the-environment$|BEGIN (PUBLIC KEY|CERTIFICATE)/.test(v) || "must be a PEM public key (or a variable holding one)" },
  { code: /\.AddCrmGrpc\(/, setting: "Tenancy__PublicKeys__0__KeyId", shared: true },
  { code: /\.AddIdentityTokenIssuer\(/, setting: "Tenancy__SigningKey", valid: (v) => /^required-from-the-environment$|BEGIN (EC )?PRIVATE KEY/.test(v) || "must be a PEM private key (or a variable holding one)" },
  { code: /\.AddIdentityTokenIssuer\(/, setting: "Tenancy__SigningKeyId" },
  // services/Contacts/Features/Suppressions/SuppressionKey.cs: the base64 of 32 to 64 bytes, checked at start-up.
  { code: /SuppressionOptions/, setting: "Contacts__SuppressionKey", valid: (v) => Buffer.from(v, "base64").length >= 32 && Buffer.from(v, "base64").length <= 64 && /^[A-Za-z0-9+/]+={0,2}$/.test(v) || "must be the base64 of 32 to 64 bytes" },
  // services/Delivery/Security/SecretBox.cs: the base64 of exactly 32 bytes, or Delivery does not start.
  { code: /new SecretBox\(/, setting: "Delivery__SecretKey", valid: (v) => Buffer.from(v, "base64").length === 32 && /^[A-Za-z0-9+/]+={0,2}$/.test(v) || "must be the base64 of exactly 32 bytes" },
];

const problems = [];
const services = {};
for (const file of files) {
  const doc = yaml.load(readFileSync(join(here, file), "utf8"));
  for (const included of doc.include ?? []) {
    const path = typeof included === "string" ? included : included.path;
    if (!files.includes(path)) problems.push(`${file}: includes ${path}, which this check does not read`);
  }
  for (const [name, service] of Object.entries(doc.services ?? {})) {
    if (services[name]) problems.push(`${file}: service ${name} is also defined in ${services[name].file}`);
    services[name] = { ...service, file };
  }
}

const codeCache = {};
const checkedRules = new Set();
const shared = {};
let dotnetServices = 0;

for (const [name, service] of Object.entries(services)) {
  const where = `${service.file}: ${name}`;
  for (const dependency of dependsOn(service)) {
    if (!services[dependency]) problems.push(`${where}: depends_on ${dependency}, which no compose file defines`);
  }
  const folder = service.build?.args?.SERVICE;
  if (!folder) continue;
  dotnetServices++;
  const env = environment(service);
  const code = serviceCode(folder);
  if (code === null) {
    problems.push(`${where}: build.args.SERVICE ${folder} is not a folder under services/`);
    continue;
  }
  const endpoints = kestrelEndpoints(folder);

  for (const rule of REQUIRED) {
    if (!rule.code.test(code)) continue;
    checkedRules.add(rule);
    const value = resolve(env[rule.setting]);
    if (value === undefined) {
      problems.push(`${where}: ${rule.setting} is not set (required: ${rule.code} in services/${folder})`);
      continue;
    }
    if (value === "") {
      problems.push(`${where}: ${rule.setting} is empty`);
      continue;
    }
    const verdict = rule.valid?.(value);
    if (typeof verdict === "string") problems.push(`${where}: ${rule.setting} ${verdict}`);
    if (rule.shared) (shared[rule.setting] ??= new Map()).set(name, env[rule.setting]);
    if (rule.server) checkServer(where, rule, value);
  }

  // Published ports: "[ip:]host:container" or the long form; the container side must be a Kestrel endpoint.
  for (const port of service.ports ?? []) {
    const target = typeof port === "object" ? Number(port.target) : Number(String(port).split(":").at(-1).split("/")[0]);
    if (!endpoints.some((e) => e.port === target)) problems.push(`${where}: publishes container port ${target}, but Kestrel listens on ${endpoints.map((e) => e.port).join(", ")} (services/${folder}/appsettings.json)`);
  }

  if (folder === "Gateway") checkGateway(where, env, code);
  for (const [setting, value] of Object.entries(env)) {
    if (!/^ConnectionStrings__/.test(setting) || !/^https?:\/\//.test(resolve(value))) continue;
    checkAddress(where, env, setting, true);
    const host = new URL(resolve(value)).hostname;
    if (!dependsOn(service).includes(host)) problems.push(`${where}: ${setting} calls ${host}, but it does not depend_on ${host}`);
  }
}

for (const [setting, values] of Object.entries(shared)) {
  if (new Set(values.values()).size > 1) problems.push(`${setting} differs between ${[...values.keys()].join(", ")}: they must share it`);
}
for (const rule of REQUIRED) {
  if (!checkedRules.has(rule)) problems.push(`no compose service's code matches ${rule.code} (for ${rule.setting}): the code changed, update REQUIRED in ${relative(root, fileURLToPath(import.meta.url))}`);
}
if (dotnetServices === 0) problems.push("no compose service is built from services/ (build.args.SERVICE)");

if (problems.length) {
  console.error(problems.join("\n"));
  console.error(`compose check: FAILED (${problems.length} problem(s))`);
  process.exit(1);
}
console.log(`compose check: ${Object.keys(services).length} services consistent (${dotnetServices} built from services/)`);

function dependsOn(service) {
  const d = service.depends_on ?? [];
  return Array.isArray(d) ? d : Object.keys(d);
}

function environment(service) {
  const env = service.environment ?? {};
  if (!Array.isArray(env)) return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? "" : String(v)]));
  return Object.fromEntries(env.map((line) => [line.split("=")[0], line.includes("=") ? line.slice(line.indexOf("=") + 1) : ""]));
}

// What compose would pass with none of the variables set: ${VAR:-default} and ${VAR-default} give the
// default, ${VAR:?message} and ${VAR?message} demand the variable (taken as set), ${VAR} and $VAR give "".
function resolve(value) {
  if (value === undefined) return undefined;
  return value
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, "$1")
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}/g, "required-from-the-environment")
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*/g, "")
    .replace(/\$\$/g, "$");
}

function serviceCode(folder) {
  if (folder in codeCache) return codeCache[folder];
  const dir = join(root, "services", folder);
  let text = null;
  try {
    if (statSync(dir).isDirectory()) text = sourceFiles(dir).map((f) => readFileSync(f, "utf8")).join("\n");
  } catch {
    text = null;
  }
  return (codeCache[folder] = text);
}

function sourceFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (["bin", "obj"].includes(entry.name)) return [];
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : entry.name.endsWith(".cs") ? [path] : [];
  });
}

// Kestrel's endpoints from appsettings.json: [{ name, port, protocols }].
function kestrelEndpoints(folder) {
  const settings = JSON.parse(readFileSync(join(root, "services", folder, "appsettings.json"), "utf8"));
  return Object.entries(settings.Kestrel?.Endpoints ?? {}).map(([name, e]) => ({ name, port: Number(new URL(e.Url.replace("0.0.0.0", "host")).port), protocols: e.Protocols ?? "Http1AndHttp2" }));
}

// The port a compose service listens on inside the network: a .NET service's Kestrel endpoints, a
// server's container ports as published (or its image's well-known port).
function listensOn(name) {
  const service = services[name];
  if (service.build?.args?.SERVICE) return kestrelEndpoints(service.build.args.SERVICE).map((e) => e.port);
  const ports = (service.ports ?? []).map((p) => (typeof p === "object" ? Number(p.target) : Number(String(p).split(":").at(-1).split("/")[0])));
  const wellKnown = { postgres: 5432, redis: 6379, rabbitmq: 5672 };
  const image = String(service.image ?? "").split(/[:/]/).find((part) => part in wellKnown);
  return [...new Set([...ports, ...(image ? [wellKnown[image]] : [])])];
}

function checkServer(where, rule, value) {
  let host;
  let port;
  let user;
  if (rule.server === "postgres") {
    const kv = Object.fromEntries(value.split(";").filter(Boolean).map((p) => [p.slice(0, p.indexOf("=")).trim().toLowerCase(), p.slice(p.indexOf("=") + 1)]));
    host = kv.host;
    port = Number(kv.port ?? 5432);
    user = kv.username ?? kv["user id"] ?? kv.userid;
    const server = services[host];
    const superuser = environment(server ?? {}).POSTGRES_USER || "postgres";
    if (user === superuser) problems.push(`${where}: ${rule.setting} connects as the superuser ${user}: give the service its own role`);
    if (!kv.database) problems.push(`${where}: ${rule.setting} names no Database`);
    else if (!creates(kv.database)) problems.push(`${where}: ${rule.setting} uses database ${kv.database}, which create-databases does not make`);
  } else if (rule.server === "rabbitmq") {
    const uri = new URL(value);
    host = uri.hostname;
    port = Number(uri.port || (uri.protocol === "amqps:" ? 5671 : 5672));
  } else {
    [host, port] = value.split(",")[0].split(":");
    port = Number(port || 6379);
  }
  if (!services[host]) problems.push(`${where}: ${rule.setting} names host ${host}, which is no compose service`);
  else if (!listensOn(host).includes(port)) problems.push(`${where}: ${rule.setting} names ${host}:${port}, but ${host} listens on ${listensOn(host).join(", ")}`);
}

// Whether the create-databases service's script makes the database (named in its script or its environment).
function creates(database) {
  const maker = services["create-databases"];
  if (!maker) return false;
  return JSON.stringify([maker.entrypoint, maker.command, maker.environment]).includes(database);
}

// The gateway's YARP clusters (services/Gateway/appsettings.json) each need an address here, at a
// compose service's Kestrel endpoint of the protocol the cluster speaks.
// A URL setting naming a .NET compose service's Kestrel endpoint of the protocol the caller speaks.
function checkAddress(where, env, setting, http2) {
  const value = resolve(env[setting]);
  if (!value) return problems.push(`${where}: ${setting} is not set`);
  const url = new URL(value);
  const service = services[url.hostname];
  if (!service?.build?.args?.SERVICE) return problems.push(`${where}: ${setting} names ${url.hostname}, which is no service built from services/`);
  const endpoint = kestrelEndpoints(service.build.args.SERVICE).find((e) => e.port === Number(url.port || 80));
  if (!endpoint) return problems.push(`${where}: ${setting} names port ${url.port} of ${url.hostname}, where Kestrel does not listen`);
  if (http2 !== /Http2/.test(endpoint.protocols) || (!http2 && endpoint.protocols === "Http2")) problems.push(`${where}: ${setting} names ${url.hostname}'s ${endpoint.name} endpoint (${endpoint.protocols}), but the caller speaks ${http2 ? "HTTP/2" : "HTTP/1.1"}`);
}

function checkGateway(where, env) {
  const settings = JSON.parse(readFileSync(join(root, "services", "Gateway", "appsettings.json"), "utf8"));
  const clusters = settings.ReverseProxy?.Clusters ?? {};
  const target = (setting, http2) => checkAddress(where, env, setting, http2);
  for (const [id, cluster] of Object.entries(clusters)) {
    const http2 = String(cluster.HttpRequest?.Version ?? "") === "2";
    for (const destination of Object.keys(cluster.Destinations ?? {})) target(`ReverseProxy__Clusters__${id}__Destinations__${destination}__Address`, http2);
  }
  for (const setting of Object.keys(env).filter((k) => k.startsWith("ReverseProxy__Clusters__"))) {
    const [, , id, , destination] = setting.split("__");
    if (!clusters[id]?.Destinations?.[destination]) problems.push(`${where}: ${setting} names a cluster or destination the gateway's appsettings.json does not have`);
  }
  // services/Gateway/GatewayModule.cs (GatewayOptions.ContactsGrpc): where API keys are resolved, over gRPC.
  target("Gateway__ContactsGrpc", true);
}
