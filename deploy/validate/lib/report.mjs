// Field paths and problem lines.
//
// A problem is one line: `DIR: Kind/name: field.path: what is wrong (what was expected)`, with the
// path written as kubectl writes it (spec.template.spec.containers[0].args[2], and
// metadata.labels["app.kubernetes.io/name"] for keys that are not plain identifiers).

// `base` extended by object keys and array indexes: at("spec", "containers", 0) is
// "spec.containers[0]".
export function at(base, ...keys) {
  let path = base;
  for (const key of keys) {
    if (typeof key === "number") path += `[${key}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) path += path ? `.${key}` : key;
    else path += `[${JSON.stringify(key)}]`;
  }
  return path;
}

// Two field paths as one: join("spec.template", "spec.containers[0]").
export function join(base, path) {
  if (!base || !path) return base || path;
  return path.startsWith("[") ? base + path : `${base}.${path}`;
}

// A JSON pointer as validators report it ("/spec/containers/0") as a field path, reading `root`
// to tell array indexes from object keys.
export function pointerToPath(pointer, root) {
  let path = "";
  let node = root;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    const index = Array.isArray(node) ? Number(key) : key;
    path = at(path, index);
    node = node?.[index];
  }
  return path;
}

// The value at a JSON pointer in `root` (undefined where there is none).
export function valueAt(pointer, root) {
  let node = root;
  for (const raw of pointer.split("/").slice(1)) {
    node = node?.[raw.replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  return node;
}

// A value as a problem line shows it: strings quoted, objects as compact JSON.
export function show(value) {
  return typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? "undefined");
}

// Problem lines of one kustomization directory.
export class Report {
  constructor(dir) {
    this.dir = dir;
    this.lines = [];
  }

  // A problem of a rendered object at a field path.
  problem(obj, path, what) {
    const name = obj?.metadata?.name ?? "(no name)";
    this.lines.push(`${this.dir}: ${obj?.kind ?? "(no kind)"}/${name}: ${path}: ${what}`);
  }

  // A problem of the directory itself (it does not render).
  dirProblem(what) {
    this.lines.push(`${this.dir}: ${what}`);
  }
}
