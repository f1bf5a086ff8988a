// What the rules may look up besides the object at hand: the objects rendered from the directory
// being checked ("here"), and those of every kustomization of the deploy/ tree, which is deployed
// as a whole (a job's pods reach the scheduler's Service, rendered from another directory).

import {
  containerEnv,
  containersOf,
  gangwayInvocation,
  isIndexedJob,
  namespaceOf,
  podTemplates,
} from "./workloads.mjs";

const key = (kind, ns, name) => `${kind}/${ns}/${name}`;

export class Cluster {
  // own: the objects rendered here; tree: those of every kustomization under deploy/.
  constructor(own, tree) {
    this.own = own;
    this.ownIndex = new Map(own.map((o) => [key(o.kind, namespaceOf(o), o.metadata?.name), o]));
    this.tree = tree;
    this.pods = [...own, ...tree].flatMap(podTemplates);
  }

  ownObject(kind, name, ns) {
    return this.ownIndex.get(key(kind, ns, name)) ?? null;
  }

  ownService(name, ns) {
    return this.ownObject("Service", name, ns);
  }

  configMap(name, ns) {
    return this.ownObject("ConfigMap", name, ns);
  }

  configMapNames(ns) {
    return this.own
      .filter((o) => o.kind === "ConfigMap" && namespaceOf(o) === ns)
      .map((o) => o.metadata?.name);
  }

  secret(name, ns) {
    return this.ownObject("Secret", name, ns);
  }

  // The Service NAME in namespace ns: the one rendered here, else every variant in the tree
  // (a base and its overlays render it more than once).
  services(name, ns) {
    const own = this.ownService(name, ns);
    if (own) return [own];
    return this.tree.filter(
      (o) => o.kind === "Service" && o.metadata?.name === name && namespaceOf(o) === ns,
    );
  }

  serviceNames(ns) {
    const names = [...this.own, ...this.tree]
      .filter((o) => o.kind === "Service" && namespaceOf(o) === ns)
      .map((o) => o.metadata?.name);
    return [...new Set(names)].sort();
  }

  // Pod templates of every workload in namespace ns, here or in the tree.
  podTemplatesIn(ns) {
    return this.pods.filter((pod) => namespaceOf(pod.obj) === ns);
  }
}

// The context rules get: the cluster, problem(), and the pod templates and container sites of an
// object (computed once).
export function ruleContext(cluster, report) {
  const sites = new Map();
  const configMapOf = (obj) => (name) => cluster.configMap(name, namespaceOf(obj));
  return {
    cluster,
    problem: (obj, path, what) => report.problem(obj, path, what),
    podTemplates,
    sites(pod) {
      if (!sites.has(pod.template)) {
        const implicit = isIndexedJob(pod) ? ["JOB_COMPLETION_INDEX"] : [];
        sites.set(
          pod.template,
          containersOf(pod).map(({ container, path }) => {
            const env = containerEnv(container, { configMap: configMapOf(pod.obj), implicit });
            return { pod, container, path, env, gangway: gangwayInvocation(container, path, env) };
          }),
        );
      }
      return sites.get(pod.template);
    },
  };
}
