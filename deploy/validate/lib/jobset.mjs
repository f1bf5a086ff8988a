// JobSet (jobset.x-k8s.io/v1alpha2, https://jobset.sigs.k8s.io) is a custom resource, so
// kubernetes-models has no schema for it. Its own fields are checked here against a small schema
// written from the JobSet API (v0.5 to v0.8), walked by checkShape; each replicated job's template
// is a batch/v1 JobTemplateSpec and gets the full Kubernetes schema check.

import { at, show } from "./report.mjs";
import { checkJobTemplate, typeMismatch, typeOf } from "./schema.mjs";

export const JOBSET_API = "jobset.x-k8s.io/v1alpha2";

const string = { type: "string" };
const integer = { type: "integer", minimum: 0 };
const boolean = { type: "boolean" };
const oneOf = (...values) => ({ type: "string", enum: values });
const list = (items) => ({ type: "array", items });
const object = (properties, required = []) => ({ type: "object", properties, required });
const free = { type: "object" }; // checked elsewhere

const replicatedJob = object(
  {
    name: string,
    groupName: string,
    replicas: integer,
    template: free,
    dependsOn: list(
      object({ name: string, status: oneOf("Ready", "Complete") }, ["name", "status"]),
    ),
  },
  ["name", "template"],
);

const jobSetSpec = object(
  {
    replicatedJobs: list(replicatedJob),
    network: object({
      enableDNSHostnames: boolean,
      subdomain: string,
      publishNotReadyAddresses: boolean,
    }),
    successPolicy: object({ operator: oneOf("All", "Any"), targetReplicatedJobs: list(string) }, [
      "operator",
    ]),
    failurePolicy: object({
      maxRestarts: integer,
      restartStrategy: oneOf("Recreate", "BlockingRecreate"),
      rules: list(
        object(
          {
            name: string,
            action: oneOf("FailJobSet", "RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts"),
            onJobFailureReasons: list(string),
            targetReplicatedJobs: list(string),
          },
          ["name", "action"],
        ),
      ),
    }),
    startupPolicy: object({ startupPolicyOrder: oneOf("AnyOrder", "InOrder") }, [
      "startupPolicyOrder",
    ]),
    coordinator: object({ replicatedJob: string, jobIndex: integer, podIndex: integer }, [
      "replicatedJob",
    ]),
    suspend: boolean,
    managedBy: string,
    ttlSecondsAfterFinished: integer,
  },
  ["replicatedJobs"],
);

const jobSet = object(
  { apiVersion: string, kind: string, metadata: free, spec: jobSetSpec, status: free },
  ["apiVersion", "kind", "metadata", "spec"],
);

// Walks `value` against `shape` (type, enum, minimum, properties, required, additionalProperties,
// items); calls problem(path, what) for each mismatch.
function checkShape(value, shape, path, problem) {
  if (typeOf(value) !== shape.type) {
    problem(path, typeMismatch(value, [shape.type]));
    return;
  }
  if (shape.enum && !shape.enum.includes(value)) {
    problem(path, `${show(value)} is not allowed (expected one of: ${shape.enum.join(", ")})`);
  }
  if (shape.minimum !== undefined && value < shape.minimum) {
    problem(path, `${value} is negative (expected ${shape.minimum} or more)`);
  }
  if (shape.items) value.forEach((item, i) => checkShape(item, shape.items, at(path, i), problem));
  if (shape.type !== "object") return;
  for (const key of shape.required ?? []) {
    if (value[key] === undefined) problem(at(path, key), "required field is missing");
  }
  for (const [key, child] of Object.entries(value)) {
    const childShape = shape.properties?.[key] ?? shape.additionalProperties;
    if (childShape) checkShape(child, childShape, at(path, key), problem);
    else if (shape.properties) problem(at(path, key), "unknown field (not in the JobSet API)");
  }
}

// Names used by the JobSet's policies must be its replicated jobs', each named once.
function checkReplicatedJobNames(spec, problem) {
  const jobs = Array.isArray(spec.replicatedJobs) ? spec.replicatedJobs : [];
  if (jobs.length === 0) {
    problem("spec.replicatedJobs", "empty (expected at least one replicated job)");
  }
  const names = jobs.map((j) => j?.name);
  names.forEach((name, i) => {
    if (names.indexOf(name) !== i) {
      problem(
        at("spec.replicatedJobs", i, "name"),
        `${show(name)} is used twice (expected unique names)`,
      );
    }
  });
  const targets = [
    ["spec.successPolicy", spec.successPolicy],
    ...(spec.failurePolicy?.rules ?? []).map((r, i) => [at("spec.failurePolicy.rules", i), r]),
  ];
  for (const [path, policy] of targets) {
    (Array.isArray(policy?.targetReplicatedJobs) ? policy.targetReplicatedJobs : []).forEach(
      (t, i) => {
        if (!names.includes(t)) {
          problem(
            at(path, "targetReplicatedJobs", i),
            `${show(t)} is not a replicated job (expected one of: ${[...new Set(names)].join(", ")})`,
          );
        }
      },
    );
  }
}

// Checks a JobSet: its own fields by hand, its metadata and job templates with Kubernetes' schema.
export function checkJobSet(obj, report) {
  const problem = (path, what) => report.problem(obj, path, what);
  checkShape(obj, jobSet, "", problem);
  checkJobTemplate({ metadata: obj.metadata ?? {} }, obj, "", report);
  if (typeOf(obj.spec) !== "object") return;
  checkReplicatedJobNames(obj.spec, problem);
  (Array.isArray(obj.spec.replicatedJobs) ? obj.spec.replicatedJobs : []).forEach((job, i) => {
    if (typeOf(job?.template) === "object") {
      checkJobTemplate(job.template, obj, at("spec.replicatedJobs", i, "template"), report);
    }
  });
}
