#!/usr/bin/env node
// Validates gangway's Kubernetes manifests without a cluster.
//
//   node deploy/validate/validate.mjs [--quiet] [KUSTOMIZATION_DIR...]
//   node deploy/validate/validate.mjs --print KUSTOMIZATION_DIR
//
// Renders each kustomization with `kubectl kustomize` (by default every one under deploy/, bases
// included, except deploy/validate/'s test cases) and checks every rendered object:
//   - against the Kubernetes schema of its apiVersion/kind (kubernetes-models), unknown fields
//     included, as `kubectl apply --validate=strict` would; JobSets' own fields by hand and their
//     job templates as batch/v1 (lib/schema.mjs, lib/jobset.mjs);
//   - against gangway's rules (lib/rules.mjs): pods outlive gangway's grace period, endpoints name
//     real Services and ports, workers match GPUs, --nnodes matches the Indexed Job, Services
//     select pods, /dev/shm is shared memory, probes, ConfigMaps and Secrets exist.
// A mistake there would otherwise show only on a cluster, as a pod killed mid-shutdown or a job
// that never forms. Each problem is one line, `DIR: Kind/name: field.path: what (expected)`; the
// exit status is 1 when there is any, 2 when the tools are missing.
//
// --print DIR prints the objects DIR renders as a JSON array (for tests that run a manifest's
// command line); renderObjects(dir) is the same for a script that imports this module.

import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const DEPLOY = dirname(HERE);
const ROOT = dirname(DEPLOY);
const USAGE = "usage: validate.mjs [--quiet] [KUSTOMIZATION_DIR...] | --print KUSTOMIZATION_DIR";

// An error that ends the run with one line and an exit status (2: tools missing, bad usage).
class Fatal extends Error {
  constructor(message, status = 2) {
    super(message);
    this.status = status;
  }
}

// The modules that need deploy/validate/node_modules, loaded once it is known to be there, and
// kubectl checked, once.
let loaded = null;
function libs() {
  loaded ??= loadLibs();
  return loaded;
}

async function loadLibs() {
  if (!existsSync(join(HERE, "node_modules", "kubernetes-models"))) {
    throw new Fatal(
      "deploy/validate/node_modules is missing: run scripts/deps.sh " +
        "(or npm ci --prefix deploy/validate)",
    );
  }
  const [kustomize, schema, jobset, rules, cluster, report] = await Promise.all([
    import("./lib/kustomize.mjs"),
    import("./lib/schema.mjs"),
    import("./lib/jobset.mjs"),
    import("./lib/rules.mjs"),
    import("./lib/cluster.mjs"),
    import("./lib/report.mjs"),
  ]);
  const problem = await kustomize.checkKubectl();
  if (problem) throw new Fatal(problem);
  return { ...kustomize, ...schema, ...jobset, ...rules, ...cluster, ...report };
}

// A directory as problem lines name it: relative to the repository root when inside it.
function displayName(dir) {
  const rel = relative(ROOT, dir);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : dir;
}

// The objects `kubectl kustomize dir` renders, as plain objects; throws with kustomize's message.
export async function renderObjects(dir) {
  const lib = await libs();
  const result = await lib.render(resolve(dir));
  if (result.error) throw new Fatal(`${displayName(resolve(dir))}: kustomize: ${result.error}`, 1);
  return result.objects;
}

// Checks one directory's rendered objects; problems go to `report`.
async function checkObjects(objects, cluster, report, lib) {
  for (const obj of objects) {
    if (obj?.apiVersion === lib.JOBSET_API && obj?.kind === "JobSet") lib.checkJobSet(obj, report);
    else await lib.checkSchema(obj, report);
  }
  lib.runRules(objects, lib.ruleContext(cluster, report));
}

// Validates kustomization directories (default: every one under deploy/): { dir, objects,
// lines } per directory, in order.
export async function validateDirs(dirs) {
  const lib = await libs();
  const treeDirs = lib.findKustomizations(DEPLOY, [HERE]);
  const wanted = dirs.length > 0 ? dirs.map((d) => resolve(d)) : treeDirs;
  const all = [...new Set([...treeDirs, ...wanted])];
  const rendered = new Map();
  const results = await lib.renderAll(all, availableParallelism());
  all.forEach((dir, i) => rendered.set(dir, results[i]));
  const tree = treeDirs.flatMap((d) => rendered.get(d).objects ?? []);
  // A tree directory that does not render is reported even when not asked for: its objects are
  // missing from every lookup.
  const broken = treeDirs.filter((d) => rendered.get(d).error && !wanted.includes(d));
  const out = [];
  for (const dir of [...broken, ...wanted]) {
    const report = new lib.Report(displayName(dir));
    const { objects, error } = rendered.get(dir);
    if (!lib.isKustomization(dir)) report.dirProblem("no kustomization.yaml here");
    else if (error) report.dirProblem(`kustomize: ${error}`);
    else await checkObjects(objects, new lib.Cluster(objects, tree), report, lib);
    out.push({ dir: report.dir, objects: objects ?? [], lines: report.lines });
  }
  return out;
}

function parseArgs(argv) {
  const args = { quiet: false, print: null, dirs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quiet" || a === "-q") args.quiet = true;
    else if (a === "--print") args.print = argv[++i] ?? "";
    else if (a.startsWith("--print=")) args.print = a.slice("--print=".length);
    else if (a === "--help" || a === "-h") args.help = true;
    else if (a.startsWith("-")) throw new Fatal(`unknown flag ${a}\n${USAGE}`);
    else args.dirs.push(a);
  }
  if (args.print === "") throw new Fatal(`--print needs a directory\n${USAGE}`);
  return args;
}

async function main(argv) {
  const args = parseArgs(argv);
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args.print !== null) {
    console.log(JSON.stringify(await renderObjects(args.print), null, 2));
    return 0;
  }
  let problems = 0;
  for (const { dir, objects, lines } of await validateDirs(args.dirs)) {
    for (const line of lines) console.log(line);
    problems += lines.length;
    if (!args.quiet) {
      const count =
        lines.length === 0 ? "ok" : `${lines.length} problem${lines.length > 1 ? "s" : ""}`;
      console.log(`${dir}: ${objects.length} objects, ${count}`);
    }
  }
  return problems > 0 ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`validate: ${e instanceof Fatal ? e.message : (e.stack ?? e)}`);
      process.exit(e instanceof Fatal ? e.status : 1);
    },
  );
}
