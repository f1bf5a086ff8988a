// What the rules read off rendered objects: pod templates and their containers, a container's
// environment and $(VAR) expansion, the gangway command line a container runs, endpoints.

import { at } from "./report.mjs";
import { JOBSET_API } from "./jobset.mjs";

export const DEFAULT_TERMINATION_GRACE = 30; // Kubernetes' default terminationGracePeriodSeconds

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const asList = (v) => (Array.isArray(v) ? v : []);

export function namespaceOf(obj) {
  return obj.metadata?.namespace ?? "default";
}

// Every pod template of a workload: { obj, path, template, job }, where path is the template's
// field path and job, for Jobs and a JobSet's jobs, is { spec, path, inJobSet }.
export function podTemplates(obj) {
  const spec = isObject(obj.spec) ? obj.spec : {};
  const one = (path, template, job = null) =>
    isObject(template) ? [{ obj, path, template, job }] : [];
  switch (obj.kind) {
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
      return one("spec.template", spec.template);
    case "Job":
      return one("spec.template", spec.template, { spec, path: "spec", inJobSet: false });
    case "CronJob": {
      const jobSpec = spec.jobTemplate?.spec ?? {};
      return one("spec.jobTemplate.spec.template", jobSpec.template, {
        spec: jobSpec,
        path: "spec.jobTemplate.spec",
        inJobSet: false,
      });
    }
    case "Pod":
      return [{ obj, path: "", template: { metadata: obj.metadata, spec }, job: null }];
    case "JobSet":
      if (obj.apiVersion !== JOBSET_API) return [];
      return asList(spec.replicatedJobs).flatMap((rj, i) => {
        const jobPath = at("spec.replicatedJobs", i, "template", "spec");
        const jobSpec = rj?.template?.spec ?? {};
        return one(at(jobPath, "template"), jobSpec.template, {
          spec: jobSpec,
          path: jobPath,
          inJobSet: true,
        });
      });
    default:
      return [];
  }
}

export function podSpecPath(pod) {
  return at(pod.path, "spec");
}

// The containers of a pod template (init containers too): { container, path }.
export function containersOf(pod) {
  const spec = isObject(pod.template.spec) ? pod.template.spec : {};
  const base = podSpecPath(pod);
  return ["initContainers", "containers"].flatMap((field) =>
    asList(spec[field])
      .map((container, i) => ({ container, path: at(base, field, i) }))
      .filter(({ container }) => isObject(container)),
  );
}

export function isIndexedJob(pod) {
  return pod.job !== null && pod.job.spec.completionMode === "Indexed";
}

// Whether a label selector (matchLabels map) selects these labels.
export function selects(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

// The environment a container's command line sees, for $(VAR) expansion: name -> value, with
// null for values known only at run time (the downward API, Secrets). `configMap(name)` returns a
// ConfigMap rendered beside the container; `implicit` are variables Kubernetes adds (the Job
// controller's JOB_COMPLETION_INDEX). openEnded: an envFrom whose keys cannot be known here.
export function containerEnv(container, { configMap, implicit = [] }) {
  const values = new Map(implicit.map((name) => [name, null]));
  let openEnded = false;
  for (const source of asList(container.envFrom)) {
    const cm = source?.configMapRef && configMap(source.configMapRef.name);
    if (!cm) {
      openEnded = true;
      continue;
    }
    for (const [key, value] of Object.entries(cm.data ?? {}))
      values.set((source.prefix ?? "") + key, value);
  }
  for (const variable of asList(container.env)) {
    if (typeof variable?.name !== "string") continue;
    values.set(variable.name, envValue(variable, values, configMap));
  }
  return { values, openEnded };
}

function envValue(variable, values, configMap) {
  if (typeof variable.value === "string") return expand(variable.value, { values }).value;
  const ref = variable.valueFrom?.configMapKeyRef;
  const value = ref ? configMap(ref.name)?.data?.[ref.key] : undefined;
  return typeof value === "string" ? value : null;
}

// Kubernetes' $(VAR) expansion of one string: { text, value, refs, undefinedRefs }. text leaves
// the references it cannot resolve as they are; value is text, or null when it depends on a
// run-time value or an undefined variable. $$ is a literal $.
export function expand(input, env) {
  const refs = [];
  const undefinedRefs = [];
  let unknown = false;
  const text = String(input).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name) => {
    if (!name) return "$";
    refs.push(name);
    if (!env.values.has(name)) {
      if (!env.openEnded) undefinedRefs.push(name);
      unknown = true;
      return match;
    }
    const v = env.values.get(name);
    if (v === null) unknown = true;
    return v ?? match;
  });
  return { text, value: unknown ? null : text, refs, undefinedRefs };
}

// Flags of `gangway run` that take no value (launcher/src/run_options.cc), and its short ones.
const RUN_SWITCHES = new Set(["standalone", "module", "no-python", "run-path"]);
const RUN_SHORT = { "-m": "module", "-r": "redirects", "-t": "tee" };
// `gangway run` flags that fall back to PET_* variables, as torchrun's do.
const RUN_PET_FLAGS = ["nnodes", "nproc-per-node", "rdzv-endpoint", "rdzv-backend"];
export const SUBCOMMANDS = ["run", "agent", "scheduler"];

// The gangway command line a container runs, or null when it runs something else:
// { sub, flags: Map(flag -> { value, path }) }, values $(VAR)-expanded (null: known only at run
// time). Flags are named without dashes, underscores read as dashes. For `gangway run`, parsing
// stops at the training script: what follows is the script's.
export function gangwayInvocation(container, path, env) {
  const command = asList(container.command);
  if (typeof command[0] !== "string" || command[0].split("/").pop() !== "gangway") return null;
  const argv = [
    ...command.slice(1).map((arg, i) => ({ arg, path: at(path, "command", i + 1) })),
    ...asList(container.args).map((arg, i) => ({ arg, path: at(path, "args", i) })),
  ].map(({ arg, path: p }) => ({ ...expand(arg, env), path: p }));
  const sub = argv[0]?.value;
  if (!SUBCOMMANDS.includes(sub)) return null;
  const flags = parseFlags(argv.slice(1), sub);
  if (sub === "run") addPetFlags(flags, container, path, env);
  return { sub, flags };
}

// Flags from argv items ({ text, value, path }, see expand()): a flag's name is read from the
// text, its value is null when only known at run time.
function parseFlags(argv, sub) {
  const flags = new Map();
  for (let i = 0; i < argv.length; i++) {
    const { text, value: known, path } = argv[i];
    if (text === "--") break;
    let name;
    let value;
    if (text.startsWith("--")) {
      const eq = text.indexOf("=");
      name = (eq < 0 ? text.slice(2) : text.slice(2, eq)).replaceAll("_", "-");
      if (eq >= 0) value = known === null ? null : text.slice(eq + 1);
    } else if (sub === "run" && RUN_SHORT[text]) {
      name = RUN_SHORT[text];
    } else if (sub === "run") {
      break; // the training script
    } else {
      continue;
    }
    if (value === undefined && sub === "run" && RUN_SWITCHES.has(name)) {
      value = "1";
    } else if (value === undefined) {
      value = argv[i + 1]?.value ?? null;
      i++;
    }
    flags.set(name, { value, path });
  }
  return flags;
}

function addPetFlags(flags, container, path, env) {
  for (const name of RUN_PET_FLAGS) {
    const pet = `PET_${name.toUpperCase().replaceAll("-", "_")}`;
    const i = asList(container.env).findIndex((v) => v?.name === pet);
    if (!flags.has(name) && i >= 0)
      flags.set(name, { value: env.values.get(pet), path: at(path, "env", i) });
  }
}

// HOST[:PORT] (or [IPv6]:PORT): { host, port, ip }, port = defaultPort when absent, NaN when bad.
export function parseEndpoint(endpoint, defaultPort) {
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(endpoint);
  if (bracketed) return { host: bracketed[1], port: portOf(bracketed[2], defaultPort), ip: true };
  const colons = endpoint.split(":").length - 1;
  if (colons > 1) return { host: endpoint, port: defaultPort, ip: true }; // bare IPv6
  const [host, port] = endpoint.split(":");
  const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
  return { host, port: portOf(port, defaultPort), ip };
}

function portOf(text, defaultPort) {
  if (text === undefined) return defaultPort;
  return /^\d{1,5}$/.test(text) ? Number(text) : NaN;
}

// A Service's DNS name as { name, namespace } (namespace null: the pod's own), or null when the
// host is not NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc or NAME.NAMESPACE.svc.<cluster domain>.
export function serviceName(host) {
  const labels = host.replace(/\.$/, "").split(".");
  if (labels.some((l) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(l))) return null;
  if (labels.length === 1) return { name: labels[0], namespace: null };
  if (labels.length === 2 || labels[2] === "svc") return { name: labels[0], namespace: labels[1] };
  return null;
}
