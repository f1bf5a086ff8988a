// Schema checks: each rendered object against the Kubernetes OpenAPI schema that kubernetes-models
// compiles into a validator per apiVersion/kind: types, enums, formats, required fields, and
// unknown fields, which the compiled validators accept (they have no additionalProperties: false)
// but `kubectl apply --validate=strict` refuses.
//
// Unknown fields are found by watching the validator: it reads every property its schema
// declares (`data.name === undefined || check(data.name)`) and enumerates the keys of maps
// (additionalProperties). The object is handed to it behind a Proxy that records those reads;
// afterwards any key of an object that the validator read properties of but neither read nor
// enumerated is not in that object's schema. Objects whose schema is free-form (no properties:
// RawExtension, FieldsV1) see no reads and are not checked.

import { JobTemplateSpec } from "kubernetes-models/batch/v1/JobTemplateSpec";
import { join, pointerToPath, show, valueAt } from "./report.mjs";

const models = new Map();

// The kubernetes-models class of a top-level apiVersion/kind, or null.
export async function modelFor(apiVersion, kind) {
  const key = `${apiVersion}/${kind}`;
  if (!models.has(key)) models.set(key, await loadModel(apiVersion, kind));
  return models.get(key);
}

async function loadModel(apiVersion, kind) {
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return null;
  }
  try {
    const model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
    // Nested types (Container, PodSpec) have modules too, but no apiVersion/kind of their own.
    return model?.apiVersion === apiVersion && model?.kind === kind ? model : null;
  } catch {
    return null;
  }
}

// Wraps `data` so that the reads of a validator are recorded per object node.
function observe(data) {
  const reads = new Map(); // object node -> keys read
  const enumerated = new Set(); // object nodes whose keys were listed (maps)
  const proxies = new WeakMap();
  const wrap = (node) => {
    if (node === null || typeof node !== "object") return node;
    if (!proxies.has(node)) {
      reads.set(node, new Set());
      const proxy = new Proxy(node, {
        get(target, key) {
          if (typeof key === "string") reads.get(target).add(key);
          return wrap(Reflect.get(target, key));
        },
        ownKeys(target) {
          enumerated.add(target);
          return Reflect.ownKeys(target);
        },
      });
      proxies.set(node, proxy);
    }
    return proxies.get(node);
  };
  return { proxy: wrap(data), reads, enumerated };
}

// Runs a kubernetes-models validator on `data`: its errors and the unknown fields, each as
// { pointer, what } relative to `data`.
function runValidator(Model, data) {
  const { proxy, reads, enumerated } = observe(data);
  let errors = [];
  try {
    Model.prototype.validate.call(proxy);
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    errors = e.errors;
  }
  return [...validatorProblems(errors, data), ...unknownFields(data, "", reads, enumerated)];
}

function unknownFields(node, pointer, reads, enumerated) {
  if (node === null || typeof node !== "object") return [];
  const problems = [];
  const entries = Array.isArray(node) ? node.entries() : Object.entries(node);
  const known = Array.isArray(node) || enumerated.has(node) ? null : reads.get(node);
  for (const [key, value] of entries) {
    const child = `${pointer}/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`;
    if (known && known.size > 0 && !known.has(key)) {
      problems.push({ pointer: child, what: `unknown field${suggestion(key, known)}` });
    } else {
      problems.push(...unknownFields(value, child, reads, enumerated));
    }
  }
  return problems;
}

// " (did you mean X?)" for the known field nearest to a misspelt one, or "".
function suggestion(key, known) {
  let best = null;
  let bestDistance = Math.max(3, Math.floor(key.length / 4)) + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best ? ` (did you mean ${best}?)` : " (not in the schema)";
}

function editDistance(a, b) {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

// Ajv's errors as one problem per field: a quantity or int-or-string that fits no branch of its
// oneOf gives three errors for one mistake.
function validatorProblems(errors, data) {
  const byPointer = new Map();
  for (const e of errors) {
    const pointer =
      e.keyword === "required" ? `${e.instancePath}/${e.params.missingProperty}` : e.instancePath;
    if (!byPointer.has(pointer)) byPointer.set(pointer, []);
    byPointer.get(pointer).push(e);
  }
  return [...byPointer].map(([pointer, errs]) => ({
    pointer,
    what: describeErrors(errs, valueAt(pointer, data)),
  }));
}

function describeErrors(errs, value) {
  const first = (keyword) => errs.find((e) => e.keyword === keyword);
  if (first("required")) return "required field is missing";
  if (first("format")?.params.format === "quantity") {
    return `${show(value)} is not a quantity (expected e.g. 8, 500m or 2Gi)`;
  }
  if (first("enum")) {
    return `${show(value)} is not allowed (expected one of: ${first("enum").params.allowedValues.join(", ")})`;
  }
  const types = errs.filter((e) => e.keyword === "type").map((e) => e.params.type);
  if (types.length > 0) {
    return typeMismatch(value, types);
  }
  const e = errs.find((x) => x.keyword !== "oneOf" && x.keyword !== "anyOf") ?? errs[0];
  return `${show(value)}: ${e.message}`;
}

const TYPE_NAMES = {
  integer: "an integer",
  number: "a number",
  string: "a string",
  boolean: "a boolean",
  object: "an object",
  array: "a list",
  null: "null",
  undefined: "absent",
};

export function typeOf(value) {
  if (Array.isArray(value)) return "array";
  if (value === null) return "null";
  if (Number.isInteger(value)) return "integer";
  return typeof value;
}

// "8 is an integer (expected a string)"
export function typeMismatch(value, types) {
  const expected = types.map((t) => TYPE_NAMES[t] ?? t).join(" or ");
  return `${show(value)} is ${TYPE_NAMES[typeOf(value)]} (expected ${expected})`;
}

// Checks `data` (at field path `base` of `obj`) against a kubernetes-models class.
export function checkAgainst(Model, data, obj, base, report) {
  for (const { pointer, what } of runValidator(Model, data)) {
    report.problem(obj, join(base, pointerToPath(pointer, data)), what);
  }
}

// A JobSet's pod templates and metadata are checked with batch/v1's JobTemplateSpec, which is
// exactly { metadata, spec: JobSpec } and requires neither.
export function checkJobTemplate(template, obj, base, report) {
  checkAgainst(JobTemplateSpec, template, obj, base, report);
}

// Checks one rendered object's schema (JobSets are checked by checkJobSet, in jobset.mjs).
export async function checkSchema(obj, report) {
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    report.problem(
      obj,
      typeof apiVersion !== "string" ? "apiVersion" : "kind",
      "required field is missing",
    );
    return;
  }
  const Model = await modelFor(apiVersion, kind);
  if (!Model) {
    report.problem(
      obj,
      "apiVersion",
      `unknown apiVersion/kind ${apiVersion} ${kind} (expected a built-in Kubernetes kind, or ` +
        "jobset.x-k8s.io/v1alpha2 JobSet)",
    );
    return;
  }
  checkAgainst(Model, obj, obj, "", report);
}
