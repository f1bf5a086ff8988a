// gangway's rules for its manifests: what the Kubernetes schema cannot see but a cluster would
// show only at run time (a pod killed before it leaves the rendezvous, an endpoint that resolves
// to nothing, workers that do not match the GPUs, a Service that routes nowhere).
//
// Three kinds of rule, each a function that reports through ctx.problem(obj, path, what):
//   objectRules(obj, ctx)     once per rendered object
//   podRules(pod, ctx)        once per pod template (see podTemplates() in workloads.mjs)
//   containerRules(site, ctx) once per container: site = { pod, container, path, env, gangway }
// ctx.cluster looks up the other objects (cluster.mjs). To add a rule, write a function and list
// it below; then add a broken case under testdata/ (README.md).

import { at, show } from "./report.mjs";
import {
  DEFAULT_TERMINATION_GRACE,
  containersOf,
  expand,
  isIndexedJob,
  namespaceOf,
  parseEndpoint,
  podSpecPath,
  selects,
  serviceName,
} from "./workloads.mjs";

// Secrets the user creates before applying the manifests (deploy/README.md lists them).
export const KNOWN_SECRETS = ["gangway-admin-token", "gangway-join-token"];
const SHM = "/dev/shm";
const LEAVE_RENDEZVOUS_S = 10;
const GPU = "nvidia.com/gpu";
const WORKLOAD_KINDS = "a Job, JobSet, Deployment, StatefulSet or DaemonSet";

const asList = (v) => (Array.isArray(v) ? v : []);
const labelsText = (labels) =>
  `{${Object.entries(labels ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ")}}`;
// The gangway containers that stop workers on SIGTERM: `gangway run` and `gangway agent`.
const stopsWorkers = (site) => site.gangway?.sub === "run" || site.gangway?.sub === "agent";

// --- per object ----------------------------------------------------------------------------------

// A Service whose selector matches no workload's pods routes to nothing.
function serviceSelectsPods(obj, ctx) {
  const selector = obj.spec?.selector;
  if (obj.kind !== "Service" || obj.apiVersion !== "v1" || !selector) return;
  if (Object.keys(selector).length === 0) return;
  const ns = namespaceOf(obj);
  if (
    ctx.cluster.podTemplatesIn(ns).some((pod) => selects(selector, pod.template.metadata?.labels))
  ) {
    return;
  }
  ctx.problem(
    obj,
    "spec.selector",
    `${labelsText(selector)} selects no pod of any workload in namespace ${ns} under deploy/ ` +
      `(expected the pod template labels of ${WORKLOAD_KINDS})`,
  );
}

// An Indexed Job's pods get DNS names (JOB-INDEX.SUBDOMAIN) only from a headless Service of that
// name that selects them. (A JobSet makes its own.)
function indexedJobSubdomain(obj, ctx) {
  if (obj.kind !== "Job" || obj.spec?.completionMode !== "Indexed") return;
  const template = obj.spec.template ?? {};
  const subdomain = template.spec?.subdomain;
  if (typeof subdomain !== "string") return;
  const path = "spec.template.spec.subdomain";
  const ns = namespaceOf(obj);
  const service = ctx.cluster.ownService(subdomain, ns);
  if (!service) {
    ctx.problem(
      obj,
      path,
      `${show(subdomain)} names no Service in namespace ${ns} rendered here ` +
        "(expected the Job's headless Service, clusterIP: None)",
    );
  } else if (service.spec?.clusterIP !== "None") {
    ctx.problem(obj, path, `Service ${subdomain} is not headless (expected clusterIP: None)`);
  } else if (!selects(service.spec?.selector, template.metadata?.labels)) {
    ctx.problem(
      obj,
      path,
      `Service ${subdomain}'s selector ${labelsText(service.spec?.selector)} ` +
        `does not select the Job's pods ${labelsText(template.metadata?.labels)} ` +
        "(expected a selector matching the pod template's labels)",
    );
  }
}

export const objectRules = [serviceSelectsPods, indexedJobSubdomain];

// --- per pod template ----------------------------------------------------------------------------

// Kubernetes kills a pod terminationGracePeriodSeconds after SIGTERM. gangway run and the agent
// stop their workers within --grace-period, then leave the rendezvous (the job re-forms without
// this pod instead of waiting for its heartbeats to time out).
function graceCoversGangway(pod, ctx) {
  const spec = pod.template.spec ?? {};
  const given = spec.terminationGracePeriodSeconds;
  const pod_s = typeof given === "number" ? given : DEFAULT_TERMINATION_GRACE;
  for (const site of ctx.sites(pod).filter(stopsWorkers)) {
    const flag = site.gangway.flags.get("grace-period");
    if (flag?.value === null) continue; // known only at run time
    const grace = flag ? Number(flag.value) : 30;
    if (!Number.isFinite(grace)) {
      ctx.problem(
        pod.obj,
        flag.path,
        `--grace-period ${show(flag.value)} is not a number of seconds`,
      );
    } else if (pod_s < grace + LEAVE_RENDEZVOUS_S) {
      ctx.problem(
        pod.obj,
        at(podSpecPath(pod), "terminationGracePeriodSeconds"),
        `${pod_s}${typeof given === "number" ? "" : " (the default)"} is shorter than gangway ` +
          `${site.gangway.sub}'s --grace-period ${grace} + ${LEAVE_RENDEZVOUS_S} s to leave the ` +
          `rendezvous (expected at least ${grace + LEAVE_RENDEZVOUS_S})`,
      );
    }
  }
}

// NCCL and DataLoader workers share memory through /dev/shm, 64 MiB in a container by default:
// gangway run and agent containers mount a medium: Memory emptyDir there, and such a volume is
// there for that.
function sharedMemory(pod, ctx) {
  const volumes = asList(pod.template.spec?.volumes);
  const gangwaySites = ctx.sites(pod).filter(stopsWorkers);
  if (gangwaySites.length === 0) return;
  const isMemory = (name) =>
    volumes.some((v) => v?.name === name && v.emptyDir?.medium === "Memory");
  for (const site of gangwaySites) {
    const i = asList(site.container.volumeMounts).findIndex((m) => m?.mountPath === SHM);
    const mount = site.container.volumeMounts?.[i];
    if (!mount) {
      ctx.problem(
        pod.obj,
        at(site.path, "volumeMounts"),
        `no mount at ${SHM} in gangway ${site.gangway.sub}'s container (expected an emptyDir with ` +
          "medium: Memory there: NCCL's shared memory; a container's default is 64 MiB)",
      );
    } else if (!isMemory(mount.name)) {
      ctx.problem(
        pod.obj,
        at(site.path, "volumeMounts", i, "name"),
        `${show(mount.name)} is not an emptyDir volume with medium: Memory (expected one at ${SHM})`,
      );
    }
  }
  volumes.forEach((volume, i) => {
    if (volume?.emptyDir?.medium !== "Memory") return;
    const mounted = gangwaySites.some((site) =>
      asList(site.container.volumeMounts).some(
        (m) => m?.name === volume.name && m.mountPath === SHM,
      ),
    );
    if (!mounted) {
      ctx.problem(
        pod.obj,
        at(podSpecPath(pod), "volumes", i),
        `medium: Memory volume ${show(volume.name)} is not mounted at ${SHM} in a gangway run or ` +
          "agent container (expected it there, for NCCL's shared memory)",
      );
    }
  });
}

// --nnodes MIN:MAX of an Indexed Job's pods: one pod per node the job can use (completions and
// parallelism MAX), and the Job is done when MIN have succeeded (successPolicy).
function nnodesMatchJob(pod, ctx) {
  if (!isIndexedJob(pod)) return;
  for (const site of ctx.sites(pod).filter((s) => s.gangway?.sub === "run")) {
    const flag = site.gangway.flags.get("nnodes");
    if (!flag || flag.value === null) continue;
    const m = /^(\d+)(?::(\d+))?$/.exec(flag.value);
    if (!m) {
      ctx.problem(pod.obj, flag.path, `--nnodes ${show(flag.value)} is not N or MIN:MAX`);
      continue;
    }
    const [min, max] = [Number(m[1]), Number(m[2] ?? m[1])];
    const job = pod.job.spec;
    for (const field of ["completions", "parallelism"]) {
      const value = job[field] ?? (field === "parallelism" ? 1 : undefined);
      if (value !== max) {
        const shown =
          job[field] !== undefined ? show(value) : value ? `${value} (the default)` : "absent";
        ctx.problem(
          pod.obj,
          at(pod.job.path, field),
          `${shown} is not --nnodes ${flag.value}'s ` +
            `MAX (expected ${max}: one pod per node the job can use)`,
        );
      }
    }
    asList(job.successPolicy?.rules).forEach((rule, i) => {
      if (rule?.succeededCount !== undefined && rule.succeededCount !== min) {
        ctx.problem(
          pod.obj,
          at(pod.job.path, "successPolicy", "rules", i, "succeededCount"),
          `${rule.succeededCount} is not --nnodes ${flag.value}'s MIN (expected ${min}: the job ` +
            "is done when its smallest gang has finished)",
        );
      }
    });
  }
}

// Every ConfigMap and Secret a pod template refers to: { kind, path, name, optional, key }.
function* configReferences(pod) {
  const base = podSpecPath(pod);
  for (const [i, v] of asList(pod.template.spec?.volumes).entries()) {
    const p = at(base, "volumes", i);
    if (v?.configMap) yield { kind: "ConfigMap", path: at(p, "configMap", "name"), ...v.configMap };
    if (v?.secret)
      yield { kind: "Secret", path: at(p, "secret", "secretName"), name: v.secret.secretName };
    for (const [j, s] of asList(v?.projected?.sources).entries()) {
      const q = at(p, "projected", "sources", j);
      if (s?.configMap)
        yield { kind: "ConfigMap", path: at(q, "configMap", "name"), ...s.configMap };
      if (s?.secret) yield { kind: "Secret", path: at(q, "secret", "name"), ...s.secret };
    }
  }
  for (const [i, s] of asList(pod.template.spec?.imagePullSecrets).entries()) {
    yield { kind: "Secret", path: at(base, "imagePullSecrets", i, "name"), ...s };
  }
  for (const { container, path } of containersOf(pod)) {
    for (const [i, e] of asList(container.env).entries()) {
      const p = at(path, "env", i, "valueFrom");
      const { configMapKeyRef: cm, secretKeyRef: secret } = e?.valueFrom ?? {};
      if (cm) yield { kind: "ConfigMap", path: at(p, "configMapKeyRef"), ...cm };
      if (secret) yield { kind: "Secret", path: at(p, "secretKeyRef", "name"), ...secret };
    }
    for (const [i, e] of asList(container.envFrom).entries()) {
      const p = at(path, "envFrom", i);
      if (e?.configMapRef)
        yield { kind: "ConfigMap", path: at(p, "configMapRef", "name"), ...e.configMapRef };
      if (e?.secretRef) yield { kind: "Secret", path: at(p, "secretRef", "name"), ...e.secretRef };
    }
  }
}

// ConfigMaps must be rendered beside the pod (unless optional: true), with the keys asked for;
// Secrets are the user's and must be one of KNOWN_SECRETS (or rendered beside the pod).
function configMapsAndSecretsExist(pod, ctx) {
  const ns = namespaceOf(pod.obj);
  for (const ref of configReferences(pod)) {
    if (ref.kind === "Secret") {
      if (KNOWN_SECRETS.includes(ref.name) || ctx.cluster.secret(ref.name, ns)) continue;
      ctx.problem(
        pod.obj,
        ref.path,
        `Secret ${show(ref.name)} is neither rendered here nor one ` +
          `the user creates (expected one of: ${KNOWN_SECRETS.join(", ")}; see deploy/README.md)`,
      );
      continue;
    }
    if (ref.optional === true) continue;
    const cm = ctx.cluster.configMap(ref.name, ns);
    const keys = Object.keys({ ...cm?.data, ...cm?.binaryData });
    if (!cm) {
      const names = ctx.cluster.configMapNames(ns).join(", ") || "none";
      ctx.problem(
        pod.obj,
        ref.path,
        `ConfigMap ${show(ref.name)} is not rendered here ` +
          `(expected one of: ${names}, or optional: true)`,
      );
    } else if (ref.key !== undefined && !keys.includes(ref.key)) {
      ctx.problem(
        pod.obj,
        ref.path,
        `ConfigMap ${ref.name} has no key ${show(ref.key)} ` +
          `(expected one of: ${keys.join(", ")})`,
      );
    }
  }
}

export const podRules = [
  graceCoversGangway,
  sharedMemory,
  nnodesMatchJob,
  configMapsAndSecretsExist,
];

// --- per container -------------------------------------------------------------------------------

// Kubernetes leaves $(X) as it is when the container defines no X: the program gets "$(X)".
function envReferencesDefined(site, ctx) {
  for (const field of ["command", "args"]) {
    asList(site.container[field]).forEach((arg, i) => {
      for (const name of expand(arg, site.env).undefinedRefs) {
        ctx.problem(
          site.pod.obj,
          at(site.path, field, i),
          `${show(arg)} uses $(${name}) but the container defines no env ${name} ` +
            "(expected it in env or envFrom; Kubernetes would pass the text unexpanded)",
        );
      }
    });
  }
}

// The schema allows a container without an image; the API server does not.
function hasImage(site, ctx) {
  if (typeof site.container.image !== "string" || site.container.image === "") {
    ctx.problem(
      site.pod.obj,
      at(site.path, "image"),
      "required field is missing (the API server refuses a container without an image)",
    );
  }
}

// A probe's port, by name or number, must be one the container declares.
function probePortsDeclared(site, ctx) {
  const ports = asList(site.container.ports);
  const declared = ports.map((p) =>
    p?.name ? `${p.name} ${p.containerPort}` : `${p?.containerPort}`,
  );
  for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    for (const handler of ["httpGet", "tcpSocket", "grpc"]) {
      const port = site.container[probe]?.[handler]?.port;
      if (port === undefined) continue;
      const found = ports.some((p) =>
        typeof port === "string" ? p?.name === port : p?.containerPort === port,
      );
      if (!found) {
        ctx.problem(
          site.pod.obj,
          at(site.path, probe, handler, "port"),
          `${show(port)} is not one of the container's ports (expected a name or number from: ` +
            `${declared.join(", ") || "none declared"})`,
        );
      }
    }
  }
}

// gangway run --rdzv-endpoint and gangway agent --scheduler name a Service of the deploy/ tree
// (or an IP address), at one of its ports.
function endpointsNameServices(site, ctx) {
  const which = { run: "rdzv-endpoint", agent: "scheduler" }[site.gangway?.sub];
  const flag = which && site.gangway.flags.get(which);
  if (!flag || flag.value === null || flag.value === "") return;
  for (const endpoint of flag.value
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const problem = checkEndpoint(endpoint, namespaceOf(site.pod.obj), ctx.cluster);
    if (problem) ctx.problem(site.pod.obj, flag.path, `--${which} ${endpoint}: ${problem}`);
  }
}

function checkEndpoint(endpoint, podNamespace, cluster) {
  const { host, port, ip } = parseEndpoint(endpoint, 29400);
  if (Number.isNaN(port)) return "the port is not a number (expected HOST:PORT)";
  if (ip) return null;
  const svc = serviceName(host);
  if (!svc) {
    return (
      `${host} is not a Service's name (expected NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc, ` +
      "NAME.NAMESPACE.svc.cluster.local or an IP address)"
    );
  }
  const ns = svc.namespace ?? podNamespace;
  const services = cluster.services(svc.name, ns);
  if (services.length === 0) {
    const names = cluster.serviceNames(ns);
    return (
      `no Service ${svc.name} in namespace ${ns} under deploy/ ` +
      (names.length > 0 ? `(expected one of: ${names.join(", ")})` : "(it has none)")
    );
  }
  const ports = [...new Set(services.flatMap((s) => asList(s.spec?.ports).map((p) => p?.port)))];
  if (!ports.includes(port)) {
    return `Service ${ns}/${svc.name} has no port ${port} (expected one of: ${ports.join(", ")})`;
  }
  return null;
}

// Workers per node must match the GPUs the container gets: gangway run --nproc-per-node (or gpu,
// auto) and gangway agent --gpus equal resources.limits["nvidia.com/gpu"].
function gpusMatchLimits(site, ctx) {
  const sub = site.gangway?.sub;
  if (sub !== "run" && sub !== "agent") return;
  const limit = site.container.resources?.limits?.[GPU];
  const gpus = limit === undefined ? 0 : Number(limit);
  const limitPath = at(site.path, "resources", "limits", GPU);
  if (sub === "run") {
    const flag = site.gangway.flags.get("nproc-per-node");
    const nproc = flag ? flag.value : "1";
    const where = flag ? flag.path : at(site.path, "args");
    const shown = flag ? `--nproc-per-node ${nproc}` : "--nproc-per-node 1 (the default)";
    if (nproc === null || nproc === "cpu") return;
    if (gpus > 0 && nproc !== "gpu" && nproc !== "auto" && Number(nproc) !== gpus) {
      ctx.problem(
        site.pod.obj,
        where,
        `${shown} does not match ${GPU} limit ${limit} at ${limitPath} ` +
          `(expected ${gpus}, gpu or auto: one worker per GPU)`,
      );
    } else if (gpus === 0 && nproc === "gpu") {
      ctx.problem(
        site.pod.obj,
        where,
        `${shown} needs GPUs but the container requests no ${GPU} ` +
          `(expected ${limitPath}, or an integer)`,
      );
    }
  } else {
    const flag = site.gangway.flags.get("gpus");
    if (!flag || flag.value === null || Number(flag.value) === gpus) return;
    ctx.problem(
      site.pod.obj,
      flag.path,
      `--gpus ${flag.value} does not match ${GPU} limit ` +
        `${limit ?? "(none)"} at ${limitPath} (expected ${gpus}: the agent offers the GPUs its pod has)`,
    );
  }
}

export const containerRules = [
  envReferencesDefined,
  hasImage,
  probePortsDeclared,
  endpointsNameServices,
  gpusMatchLimits,
];

// Runs every rule over one directory's objects.
export function runRules(objects, ctx) {
  for (const obj of objects) {
    for (const rule of objectRules) rule(obj, ctx);
    for (const pod of ctx.podTemplates(obj)) {
      for (const rule of podRules) rule(pod, ctx);
      for (const site of ctx.sites(pod)) {
        for (const rule of containerRules) rule(site, ctx);
      }
    }
  }
}
