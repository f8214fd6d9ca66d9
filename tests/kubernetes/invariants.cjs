// What the manifests promise an operator, checked on what `kubectl
// kustomize` built for one overlay (beyond the schema, validate.cjs):
//  - every pod runs as 10001:10001 with fsGroup 10001, non-root, its root
//    file system read-only, no privilege escalation;
//  - every container has startup and readiness probes; every Deployment a
//    preStop delay, Prometheus scrape annotations, a PodDisruptionBudget
//    and a HorizontalPodAutoscaler;
//  - every Secret and ConfigMap a pod mounts or reads is in the build (or
//    is one the README tells the operator to create), with no placeholder
//    in its data;
//  - NetworkPolicies: ingress denied by default; scoring reached only from
//    intake and the gateway; referral only from intake and labelled gateways (the HTTP
//    gateway carries the label); Redis only from intake, referral and
//    itself.
//   node invariants.cjs built.yaml [--external NAME,NAME]
// --external: Secrets and ConfigMaps this build uses that another build
// (or the operator) makes; the caller checks those exist there.
"use strict";
const fs = require("fs");
const YAML = require("yaml");

const file = process.argv[2];
const externalArg = process.argv[3] === "--external" ? process.argv[4].split(",") : [];
const objs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS()).filter(Boolean);
const problems = [];
const named = (kind) => new Map(objs.filter((o) => o.kind === kind).map((o) => [o.metadata.name, o]));
const secrets = named("Secret");
const configMaps = named("ConfigMap");
// Created by the operator, as the README says (a token from their IdP).
const external = new Set(externalArg);

const workloads = objs.filter((o) => ["Deployment", "StatefulSet", "Job"].includes(o.kind));
if (workloads.length === 0) problems.push("no workloads in the build");
for (const w of workloads) {
  const id = `${w.kind} ${w.metadata.name}`;
  const pod = w.spec.template.spec;
  const sc = pod.securityContext || {};
  if (sc.runAsUser !== 10001 || sc.runAsGroup !== 10001 || sc.fsGroup !== 10001 || sc.runAsNonRoot !== true) {
    problems.push(`${id}: pod must run as 10001:10001 with fsGroup 10001 and runAsNonRoot`);
  }
  for (const c of pod.containers) {
    const csc = c.securityContext || {};
    if (csc.readOnlyRootFilesystem !== true || csc.allowPrivilegeEscalation !== false) {
      problems.push(`${id}/${c.name}: root file system must be read-only, no privilege escalation`);
    }
    if (w.kind !== "Job" && (!c.startupProbe || !c.readinessProbe)) {
      problems.push(`${id}/${c.name}: needs a startup and a readiness probe`);
    }
    for (const e of c.env || []) {
      const ref = e.valueFrom && e.valueFrom.secretKeyRef;
      if (ref && !secrets.has(ref.name) && !external.has(ref.name)) {
        problems.push(`${id}/${c.name}: env ${e.name} reads Secret ${ref.name}, which is not in the build`);
      }
    }
  }
  for (const v of pod.volumes || []) {
    if (v.secret && !secrets.has(v.secret.secretName) && !external.has(v.secret.secretName)) {
      problems.push(`${id}: volume ${v.name} mounts Secret ${v.secret.secretName}, which is not in the build`);
    }
    if (v.configMap && !configMaps.has(v.configMap.name) && !external.has(v.configMap.name)) {
      problems.push(`${id}: volume ${v.name} mounts ConfigMap ${v.configMap.name}, which is not in the build`);
    }
  }
  if (w.kind === "Deployment") {
    const c = pod.containers[0];
    if (!(c.lifecycle && c.lifecycle.preStop)) problems.push(`${id}: needs a preStop delay`);
    const a = w.spec.template.metadata.annotations || {};
    if (a["prometheus.io/scrape"] !== "true" || !a["prometheus.io/port"]) {
      problems.push(`${id}: needs Prometheus scrape annotations`);
    }
    const labels = w.spec.template.metadata.labels;
    const pdb = objs.find((o) => o.kind === "PodDisruptionBudget" &&
      Object.entries(o.spec.selector.matchLabels).every(([k, v]) => labels[k] === v));
    if (!pdb) problems.push(`${id}: no PodDisruptionBudget selects its pods`);
    const hpa = objs.find((o) => o.kind === "HorizontalPodAutoscaler" &&
      o.spec.scaleTargetRef.kind === "Deployment" && o.spec.scaleTargetRef.name === w.metadata.name);
    if (!hpa) problems.push(`${id}: no HorizontalPodAutoscaler scales it`);
  }
}

for (const s of secrets.values()) {
  for (const [k, v] of Object.entries(s.data || {})) {
    const text = Buffer.from(String(v).replace(/\s+/g, ""), "base64").toString("utf8");
    if (text.trim() === "" || /\(your |REPLACE|placeholder|changeme/i.test(text)) {
      problems.push(`Secret ${s.metadata.name}: ${k} is empty or a placeholder`);
    }
  }
}

// NetworkPolicies (skipped for a build without pods that serve, e.g. the Job).
const policies = objs.filter((o) => o.kind === "NetworkPolicy");
if (workloads.some((w) => w.kind === "Deployment")) {
  if (!policies.some((p) => Object.keys(p.spec.podSelector).length === 0 &&
      p.spec.policyTypes.includes("Ingress") && !p.spec.ingress)) {
    problems.push("no default-deny ingress NetworkPolicy");
  }
  const sourcesOf = (app, port) => {
    const out = [];
    for (const p of policies) {
      const sel = p.spec.podSelector.matchLabels || {};
      if (sel.app !== app) continue;
      for (const rule of p.spec.ingress || []) {
        if (!(rule.ports || []).some((x) => x.port === port)) continue;
        if (!rule.from) out.push("anyone");
        for (const f of rule.from || []) out.push(JSON.stringify(f.podSelector ? f.podSelector.matchLabels : f));
      }
    }
    return out.sort();
  };
  const expect = (app, port, want) => {
    const got = sourcesOf(app, port);
    if (JSON.stringify(got) !== JSON.stringify(want.map((w) => JSON.stringify(w)).sort())) {
      problems.push(`NetworkPolicy: ${app}:${port} is reachable from ${got.join(" ")}`);
    }
  };
  expect("scoring", 7101, [{app: "intake"}, {app: "gateway"}]);
  expect("referral", 7102, [{app: "intake"}, {"aqueduct.example/referral-client": "true"}]);
  const gateway = objs.find((o) => o.kind === "Deployment" && o.metadata.name === "gateway");
  if (gateway) {
    const labels = gateway.spec.template.metadata.labels || {};
    if (labels["aqueduct.example/referral-client"] !== "true") {
      problems.push("Deployment gateway: its pods must carry aqueduct.example/referral-client=true to reach referral");
    }
    // Its HTTP port is the front door: open to everyone.
    const got = sourcesOf("gateway", 7180);
    if (JSON.stringify(got) !== JSON.stringify(["anyone"])) {
      problems.push(`NetworkPolicy: gateway:7180 is reachable from ${got.join(" ") || "no one"}`);
    }
  }
  if (objs.some((o) => o.kind === "StatefulSet" && o.metadata.name === "redis")) {
    expect("redis", 6379, [{app: "intake"}, {app: "referral"}, {app: "redis"}]);
  }
}

for (const p of problems) console.error(`${file}: ${p}`);
console.log(`${file}: ${objs.length} objects, ${problems.length} problems`);
process.exit(problems.length > 0 ? 1 : 0);
