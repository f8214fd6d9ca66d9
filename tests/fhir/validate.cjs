// Validates FHIR R4 resources against the core specification's structure
// definitions (the `fhir` npm package, FHIR 4.0): types, cardinalities,
// required value sets, and unknown properties (errorOnUnexpected). Each
// file holds one resource (a Bundle's entries are validated inside it) or,
// for *.ndjson, one resource per line. Prints one line per resource; exits 1
// naming each resource with an error.
//   node validate.cjs FILE...
"use strict";
const fs = require("fs");
const { Fhir } = require("fhir");

const fhir = new Fhir();
let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, "utf8");
  const docs = file.endsWith(".ndjson")
    ? text.split("\n").filter((l) => l.trim() !== "")
    : [text];
  docs.forEach((doc, i) => {
    const where = file.endsWith(".ndjson") ? `${file}:${i + 1}` : file;
    let resource;
    try {
      resource = JSON.parse(doc);
    } catch (e) {
      console.error(`${where}: not JSON: ${e.message}`);
      failed++;
      return;
    }
    const result = fhir.validate(resource, { errorOnUnexpected: true });
    const errors = result.messages.filter((m) => m.severity === "error");
    if (!result.valid || errors.length > 0) {
      failed++;
      for (const m of errors) console.error(`${where}: ${resource.resourceType}/${resource.id}: ${m.location}: ${m.message}`);
      return;
    }
    checked++;
    console.log(`ok ${where}: ${resource.resourceType}/${resource.id}`);
  });
}
console.log(`${checked} resources valid, ${failed} not`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
