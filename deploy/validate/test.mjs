#!/usr/bin/env node
// Tests of the manifest validator (node's test runner: `node deploy/validate/test.mjs`):
//   - every kustomization under deploy/ validates cleanly;
//   - every case under testdata/ (an overlay of a real base that breaks one thing) fails, with a
//     line for its own directory that contains the text of its expect.txt, which names the object;
//   - the validator's parsers, its JobSet checks, and its one-line failures when kubectl is too
//     old or node_modules is missing.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
const VALIDATE = join(HERE, "validate.mjs");
const TESTDATA = join(HERE, "testdata");
if (!existsSync(join(HERE, "node_modules", "kubernetes-models"))) {
  console.error(
    "deploy/validate/node_modules is missing: run scripts/deps.sh " +
      "(or npm ci --prefix deploy/validate)",
  );
  process.exit(1);
}

const CASES = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

function validate(args, env = process.env) {
  const r = spawnSync(process.execPath, [VALIDATE, ...args], { cwd: ROOT, env, encoding: "utf8" });
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    lines: r.stdout.split("\n").filter(Boolean),
  };
}

function withTempDir(fn) {
  const dir = mkdtempSync(join(tmpdir(), "gangway-validate-"));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("every kustomization under deploy/ validates cleanly", () => {
  const r = validate([]);
  assert.equal(r.stderr, "");
  assert.equal(r.lines.filter((l) => !/: \d+ objects, ok$/.test(l)).join("\n"), "");
  assert.ok(r.lines.length >= 7, `expected every kustomization, got:\n${r.stdout}`);
  assert.equal(r.status, 0);
});

test("every broken case fails with its expected line", async (t) => {
  assert.ok(CASES.length >= 14, `only ${CASES.length} cases`);
  const r = validate(CASES.map((c) => join(TESTDATA, c)));
  assert.equal(r.stderr, "");
  assert.equal(r.status, 1, r.stdout);
  for (const name of CASES) {
    await t.test(name, () => {
      const dir = relative(ROOT, join(TESTDATA, name));
      const expected = readFileSync(join(TESTDATA, name, "expect.txt"), "utf8").trim();
      assert.match(
        expected,
        /^[A-Z][A-Za-z]+\/[a-z0-9.-]+: \S/,
        "expect.txt must start with the object it names, Kind/name: field.path",
      );
      const own = r.lines.filter((l) => l.startsWith(`${dir}: `) && !/: \d+ objects, /.test(l));
      assert.ok(
        own.some((l) => l.includes(expected)),
        `no line of ${dir} contains:\n  ${expected}\nits lines:\n  ${own.join("\n  ") || "(none)"}`,
      );
    });
  }
});

test("every broken case is an overlay of a real kustomization", () => {
  for (const name of CASES) {
    const text = readFileSync(join(TESTDATA, name, "kustomization.yaml"), "utf8");
    const bases = [...text.matchAll(/^- (\.\.\/\.\.\/\.\.\/[\w/-]+)$/gm)].map((m) => m[1]);
    assert.equal(bases.length, 1, `${name}: expected one resource ../../../DIR`);
    readFileSync(join(TESTDATA, name, bases[0], "kustomization.yaml")); // throws when absent
  }
});

test("a directory that does not render is named, with kustomize's message", () => {
  withTempDir((dir) => {
    writeFileSync(join(dir, "kustomization.yaml"), "resources:\n- missing.yaml\n");
    const r = validate(["--quiet", dir]);
    assert.equal(r.status, 1);
    assert.equal(r.lines.length, 1, r.stdout);
    assert.match(r.lines[0], new RegExp(`^${dir}: kustomize: .*missing\\.yaml`));
  });
});

test("--print renders a directory as a JSON array", () => {
  const r = validate(["--print", "deploy/training/cpu"]);
  assert.equal(r.status, 0, r.stderr);
  const objects = JSON.parse(r.stdout);
  const job = objects.find((o) => o.kind === "Job");
  assert.deepEqual(job.spec.template.spec.containers[0].command, ["gangway", "run"]);
  assert.ok(job.spec.template.spec.containers[0].args.includes("--nnodes=2:3"));
});

test("a kubectl whose kustomize is older than v4 is refused in one line", () => {
  withTempDir((dir) => {
    const kubectl = join(dir, "kubectl");
    writeFileSync(kubectl, '#!/bin/sh\necho \'{"clientVersion": {"gitVersion": "v1.20.15"}}\'\n');
    chmodSync(kubectl, 0o755);
    const r = validate([], { ...process.env, PATH: `${dir}:${process.env.PATH}` });
    assert.equal(r.status, 2);
    assert.equal(
      r.stderr.trim(),
      "validate: needs kubectl with kustomize v4+ (kubectl 1.21+): found kubectl v1.20.15 with no kustomize version",
    );
  });
});

test("missing node_modules is reported with what to run", () => {
  withTempDir((dir) => {
    mkdirSync(join(dir, "validate"));
    cpSync(VALIDATE, join(dir, "validate", "validate.mjs"));
    const r = spawnSync(process.execPath, [join(dir, "validate", "validate.mjs")], {
      encoding: "utf8",
    });
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /^validate: deploy\/validate\/node_modules is missing: run scripts\/deps\.sh/,
    );
  });
});

// --- the pieces, in process -------------------------------------------------------------------

const { gangwayInvocation, containerEnv, expand, parseEndpoint, serviceName } =
  await import("./lib/workloads.mjs");
const { checkSchema } = await import("./lib/schema.mjs");
const { checkJobSet } = await import("./lib/jobset.mjs");
const { Report, at, pointerToPath } = await import("./lib/report.mjs");

const noConfigMaps = { configMap: () => null };

test("field paths", () => {
  assert.equal(at("spec", "containers", 0, "args", 2), "spec.containers[0].args[2]");
  assert.equal(
    at("metadata", "labels", "app.kubernetes.io/name"),
    'metadata.labels["app.kubernetes.io/name"]',
  );
  const obj = { spec: { containers: [{ resources: { limits: { "nvidia.com/gpu": 8 } } }] } };
  assert.equal(
    pointerToPath("/spec/containers/0/resources/limits/nvidia.com~1gpu", obj),
    'spec.containers[0].resources.limits["nvidia.com/gpu"]',
  );
});

test("$(VAR) expansion", () => {
  const env = containerEnv(
    {
      env: [
        { name: "A", value: "a" },
        { name: "B", value: "$(A)-b" },
        { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
      ],
    },
    noConfigMaps,
  );
  assert.equal(expand("x=$(B)", env).value, "x=a-b");
  assert.equal(expand("$$(A)", env).value, "$(A)");
  assert.equal(expand("--addr=$(IP)", env).value, null);
  assert.equal(expand("--addr=$(IP)", env).text, "--addr=$(IP)");
  assert.deepEqual(expand("$(C)", env).undefinedRefs, ["C"]);
  const open = containerEnv({ envFrom: [{ secretRef: { name: "s" } }] }, noConfigMaps);
  assert.deepEqual(expand("$(C)", open).undefinedRefs, []);
});

test("gangway command lines", () => {
  const parse = (command, args, env = []) => {
    const container = { command, args, env };
    return gangwayInvocation(container, "c", containerEnv(container, noConfigMaps));
  };
  const run = parse(
    ["/usr/bin/gangway", "run"],
    ["--nnodes", "2:4", "--nproc_per_node=8", "--standalone", "-m", "train", "--grace-period=99"],
  );
  assert.equal(run.sub, "run");
  assert.equal(run.flags.get("nnodes").value, "2:4");
  assert.equal(run.flags.get("nnodes").path, "c.args[0]");
  assert.equal(run.flags.get("nproc-per-node").value, "8");
  assert.equal(run.flags.get("module").value, "1");
  assert.equal(run.flags.has("grace-period"), false, "the script's own flags are not gangway's");
  const pet = parse(["gangway"], ["run", "train.py"], [{ name: "PET_NPROC_PER_NODE", value: "4" }]);
  assert.equal(pet.flags.get("nproc-per-node").value, "4");
  const late = parse(
    ["gangway", "agent"],
    ["--gpus=$(N)", "--scheduler", "s:1"],
    [{ name: "N", valueFrom: { fieldRef: { fieldPath: "x" } } }],
  );
  assert.equal(late.flags.get("gpus").value, null);
  assert.equal(late.flags.get("scheduler").value, "s:1");
  assert.equal(parse(["python"], ["train.py"]), null);
  assert.equal(parse(["gangway", "topo"], []), null);
});

test("endpoints and Service names", () => {
  assert.deepEqual(parseEndpoint("svc.ns.svc:29400", 1), {
    host: "svc.ns.svc",
    port: 29400,
    ip: false,
  });
  assert.deepEqual(parseEndpoint("10.0.0.1", 29400), { host: "10.0.0.1", port: 29400, ip: true });
  assert.deepEqual(parseEndpoint("[fd00::1]:5", 1), { host: "fd00::1", port: 5, ip: true });
  assert.ok(Number.isNaN(parseEndpoint("svc:http", 1).port));
  assert.deepEqual(serviceName("sched"), { name: "sched", namespace: null });
  assert.deepEqual(serviceName("sched.gangway"), { name: "sched", namespace: "gangway" });
  assert.deepEqual(serviceName("sched.gangway.svc.cluster.local"), {
    name: "sched",
    namespace: "gangway",
  });
  assert.equal(serviceName("pod-0.job.gangway.pod"), null);
});

test("unknown fields are errors at every depth, map keys are not", async () => {
  const report = new Report("d");
  await checkSchema(
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "x", labels: { "a.b/c": "d" } },
      spec: {
        selector: { matchLabels: { a: "b" } },
        replica: 2,
        template: {
          metadata: { labels: { a: "b" } },
          spec: {
            containers: [
              {
                name: "c",
                image: "i",
                resources: { limits: { "example.com/x": 1 } },
                imagePullPolicyy: "Always",
              },
            ],
          },
        },
      },
    },
    report,
  );
  assert.deepEqual(report.lines, [
    "d: Deployment/x: spec.replica: unknown field (did you mean replicas?)",
    "d: Deployment/x: spec.template.spec.containers[0].imagePullPolicyy: unknown field (did you mean imagePullPolicy?)",
  ]);
});

test("a JobSet's own fields are checked by hand", () => {
  const report = new Report("d");
  checkJobSet(
    {
      apiVersion: "jobset.x-k8s.io/v1alpha2",
      kind: "JobSet",
      metadata: { name: "js" },
      spec: {
        replicatedJobs: [
          {
            name: "w",
            replicas: "1",
            template: { spec: { template: { spec: { containers: [] } } } },
          },
          { name: "w" },
        ],
        successPolicy: { operator: "Some", targetReplicatedJobs: ["v"] },
        failurePolicy: { maxRestarts: -1 },
        network: { enableDNSHostnames: "yes" },
      },
    },
    report,
  );
  assert.deepEqual(report.lines, [
    'd: JobSet/js: spec.replicatedJobs[0].replicas: "1" is a string (expected an integer)',
    "d: JobSet/js: spec.replicatedJobs[1].template: required field is missing",
    'd: JobSet/js: spec.successPolicy.operator: "Some" is not allowed (expected one of: All, Any)',
    "d: JobSet/js: spec.failurePolicy.maxRestarts: -1 is negative (expected 0 or more)",
    'd: JobSet/js: spec.network.enableDNSHostnames: "yes" is a string (expected a boolean)',
    'd: JobSet/js: spec.replicatedJobs[1].name: "w" is used twice (expected unique names)',
    'd: JobSet/js: spec.successPolicy.targetReplicatedJobs[0]: "v" is not a replicated job (expected one of: w)',
  ]);
});
