// Finding kustomizations and rendering them with `kubectl kustomize`.

import { execFile } from "node:child_process";
import { readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

export const KUSTOMIZE_NEEDED = "kubectl with kustomize v4+ (kubectl 1.21+)";
const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

function run(file, args) {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ error, stdout, stderr });
    });
  });
}

// null when kubectl is there with kustomize v4 or newer; otherwise one line saying what is missing.
export async function checkKubectl() {
  const { error, stdout } = await run("kubectl", ["version", "--client", "-o", "json"]);
  if (error?.code === "ENOENT") return `needs ${KUSTOMIZE_NEEDED}: kubectl is not on PATH`;
  let version;
  try {
    version = JSON.parse(stdout);
  } catch {
    return `needs ${KUSTOMIZE_NEEDED}: \`kubectl version --client -o json\` failed`;
  }
  const kubectl = version.clientVersion?.gitVersion ?? "unknown";
  const major = Number(/^v?(\d+)\./.exec(version.kustomizeVersion ?? "")?.[1]);
  if (!(major >= 4)) {
    const kustomize = version.kustomizeVersion ?? "no kustomize version";
    return `needs ${KUSTOMIZE_NEEDED}: found kubectl ${kubectl} with ${kustomize}`;
  }
  return null;
}

export function isKustomization(dir) {
  return KUSTOMIZATION_FILES.some((f) => existsSync(join(dir, f)));
}

// Every directory under `root` that holds a kustomization, sorted, skipping `exclude` (absolute).
export function findKustomizations(root, exclude = []) {
  const found = [];
  const visit = (dir) => {
    if (exclude.includes(dir)) return;
    if (isKustomization(dir)) found.push(dir);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory() && entry.name !== "node_modules") visit(join(dir, entry.name));
    }
  };
  visit(root);
  return found.sort();
}

// kubectl's error as one line, without its log header: E1123 09:35:10.6 23747 run.go:72] "command
// failed" err="MESSAGE".
function kustomizeMessage(stderr) {
  const text = stderr
    .trim()
    .replace(/\s*\n\s*/g, " ")
    .replace(/^[EWIF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] /, "");
  const m = /^"command failed" err="(.*)"$/.exec(text);
  return m ? m[1].replaceAll('\\"', '"') : text;
}

// The objects `kubectl kustomize dir` renders: { objects } or { error } with kustomize's message.
export async function render(dir) {
  const { error, stdout, stderr } = await run("kubectl", ["kustomize", dir]);
  if (error) return { error: kustomizeMessage(stderr || error.message) };
  const objects = [];
  for (const doc of parseAllDocuments(stdout)) {
    if (doc.errors.length > 0) return { error: `unreadable output: ${doc.errors[0].message}` };
    const obj = doc.toJS();
    if (obj !== null && obj !== undefined) objects.push(obj);
  }
  return { objects };
}

// render() for each directory, a few at a time; results in the same order.
export async function renderAll(dirs, concurrency) {
  const results = new Array(dirs.length);
  let next = 0;
  const worker = async () => {
    while (next < dirs.length) {
      const i = next++;
      results[i] = await render(dirs[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return results;
}
