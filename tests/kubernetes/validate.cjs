// Validates every object in the given multi-document YAML files (what
// `kubectl kustomize` printed) against the Kubernetes schema of
// kubernetes-models: wrong types, bad formats and missing required fields
// fail. Unknown fields fail too, as `kubectl apply --validate=strict`
// would: the schema's validator reads every field its schema knows (and
// enumerates the keys of free-form maps such as labels), so a field it
// never read is not in the schema (a misspelt `replica:` or `fsgroup:`).
// Prints one line per object; exits 1 naming each object that does not
// validate or whose kind has no schema here.
//   node validate.cjs built.yaml...
"use strict";
const fs = require("fs");
const YAML = require("yaml");

// A view of `obj` that records the path of every field read through it.
function track(obj, path, seen) {
  if (obj === null || typeof obj !== "object") return obj;
  return new Proxy(obj, {
    get(target, key) {
      const value = target[key];
      if (typeof key !== "string") return value;
      seen.add(`${path}/${key}`);
      return track(value, `${path}/${key}`, seen);
    },
    has(target, key) {
      if (typeof key === "string") seen.add(`${path}/${key}`);
      return key in target;
    },
    ownKeys(target) {
      for (const key of Reflect.ownKeys(target)) seen.add(`${path}/${String(key)}`);
      return Reflect.ownKeys(target);
    },
  });
}

// Every field path in `obj` that `seen` lacks.
function unread(obj, path, seen, out) {
  if (obj === null || typeof obj !== "object") return out;
  for (const key of Object.keys(obj)) {
    const p = `${path}/${key}`;
    if (!seen.has(p)) out.push(p);
    else unread(obj[key], p, seen, out);
  }
  return out;
}

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      console.error(`${file}: YAML error: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const what = `${file}: ${obj.apiVersion} ${obj.kind} ${obj.metadata && obj.metadata.name}`;
    // kustomize folds long base64 values over lines; the API server's
    // decoder skips the line breaks, the schema's "byte" format does not.
    if (obj.kind === "Secret" && obj.data) {
      for (const k of Object.keys(obj.data)) obj.data[k] = String(obj.data[k]).replace(/\s+/g, "");
    }
    let Model;
    try {
      Model = require(`kubernetes-models/${obj.apiVersion}/${obj.kind}`)[obj.kind];
    } catch (e) {
      console.error(`${what}: no schema for this apiVersion and kind`);
      failed++;
      continue;
    }
    const seen = new Set();
    try {
      Model.prototype.validate.call(track(obj, "", seen));
    } catch (e) {
      console.error(`${what}: ${e.message}`);
      failed++;
      continue;
    }
    const unknown = unread(obj, "", seen, []);
    if (unknown.length > 0) {
      console.error(`${what}: unknown fields: ${unknown.join(", ")}`);
      failed++;
      continue;
    }
    checked++;
    console.log(`ok ${what}`);
  }
}
console.log(`${checked} objects valid, ${failed} not`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
