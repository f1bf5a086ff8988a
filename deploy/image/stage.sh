#!/usr/bin/env bash
# Installs a gangway build the way the container image gets it, and checks the staged tree:
#
#   deploy/image/stage.sh [--cuda] [--sanitized] BUILD_DIR [DESTDIR]
#
# 1. `cmake --install BUILD_DIR --prefix /usr --strip` into DESTDIR (an empty or new directory;
#    without DESTDIR, a temporary one that is removed afterwards: a check only).
# 2. The files the image's users rely on are there (gangway, the example the Kubernetes manifests
#    run, libgangway_kv with its headers and CMake package).
# 3. Every shared library that an installed ELF file names (DT_NEEDED) resolves either inside the
#    staged tree or to a file that a Debian package listed in runtime-packages.txt owns (dpkg -S).
#    With --cuda, also to a package of cuda-runtime-packages.txt (the CUDA variant's NVIDIA
#    packages; a toolkit under /usr/local/cuda that no package owns is matched by library name).
#    Dependencies of those libraries are apt's business: it installs them with the package.
#    With --sanitized (CI stages its ASan build too; the image is never built with sanitizers),
#    libasan and libubsan are let through, and so are the packages the listed ones depend on:
#    without --as-needed, such a build links its dependencies' dependencies directly.
# 4. The staged gangway runs (--help); the Python module imports and makes a manager and a C
#    program links and runs against libgangway_kv (both skipped with --sanitized: an ASan library
#    loads only with its runtime preloaded); the C++ headers compile.
#
# The Dockerfiles run this in their build stage and copy DESTDIR into the runtime stage, which
# installs exactly the packages of runtime-packages.txt; ctest runs it as Deploy.ImageStage.
# Package lists: one package per line, '#' starts a comment.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() {
  echo "stage.sh: $*" >&2
  exit 1
}
usage="usage: stage.sh [--cuda] [--sanitized] BUILD_DIR [DESTDIR]"

cuda=0
sanitized=0
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --cuda) cuda=1 ;;
    --sanitized) sanitized=1 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) die "unknown option '$1'; $usage" ;;
  esac
  shift
done
[[ $# -eq 1 || $# -eq 2 ]] || die "$usage"
build=$1
[[ -f $build/cmake_install.cmake ]] ||
  die "'$build' is not a configured CMake build directory (no cmake_install.cmake)"
for tool in cmake readelf ldd dpkg-query; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed; it is needed to stage and check"
done

runtime_list=$here/runtime-packages.txt
cuda_list=$here/cuda-runtime-packages.txt
[[ -f $runtime_list ]] || die "missing $runtime_list"
[[ -f $cuda_list ]] || die "missing $cuda_list"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ $# -eq 2 ]]; then
  dest=$2
  mkdir -p "$dest" || die "cannot create DESTDIR '$dest'"
  [[ -z $(ls -A "$dest") ]] || die "DESTDIR '$dest' is not empty; give an empty or new directory"
  dest=$(cd "$dest" && pwd)
else
  dest=$scratch/stage
  mkdir "$dest"
fi

# 1. Install.
if ! DESTDIR=$dest cmake --install "$build" --prefix /usr --strip >"$scratch/install.log" 2>&1; then
  cat "$scratch/install.log" >&2
  die "cmake --install '$build' failed (output above)"
fi

# 2. What the image promises.
shopt -s nullglob
lib_dirs=()  # the loader's default directories, inside the staged tree
for d in "$dest"/usr/lib/*-linux-gnu "$dest"/usr/lib "$dest"/usr/local/lib; do
  [[ -d $d ]] && lib_dirs+=("$d")
done
kv_libs=()
cmake_configs=()
for d in "${lib_dirs[@]}"; do
  [[ -e $d/libgangway_kv.so.1 ]] && kv_libs+=("$d/libgangway_kv.so.1")
  [[ -e $d/cmake/gangway/gangway-config.cmake ]] && cmake_configs+=("$d/cmake/gangway")
done
shopt -u nullglob
expect() {  # PATH (relative to DESTDIR) WHY
  [[ -e $dest/$1 ]] || die "the staged tree lacks /$1 ($2)"
}
expect usr/bin/gangway "the image's command"
expect usr/share/gangway/examples/ddp_train.py \
  "the Kubernetes manifests run it; install rule in deploy/examples/CMakeLists.txt"
expect usr/include/gangway/kv.h "libgangway_kv's C API; install rule in runtime/CMakeLists.txt"
expect usr/include/gangway/kv/manager.h "libgangway_kv's C++ API"
[[ ${#kv_libs[@]} -gt 0 ]] ||
  die "the staged tree lacks libgangway_kv.so.1 in /usr/lib (runtime/CMakeLists.txt installs it)"
[[ ${#cmake_configs[@]} -gt 0 ]] ||
  die "the staged tree lacks cmake/gangway/gangway-config.cmake in /usr/lib (find_package(gangway))"
kv_lib_dir=$(dirname "${kv_libs[0]}")

# 3. Shared-library dependencies.
declare -A allowed=()  # package -> list file
while read -r pkg; do
  allowed[$pkg]=$runtime_list
done < <(sed -e 's/#.*//' "$runtime_list" | awk 'NF {print $1}')
if [[ $sanitized == 1 ]]; then
  # Debian's gcc links with --as-needed, but not with -fsanitize: a sanitizer build names every
  # library on its link line, its dependencies' dependencies too (gRPC's c-ares, re2, OpenSSL).
  # Accept what apt installs with the listed packages: their installed dependencies, recursively.
  frontier=("${!allowed[@]}")
  while [[ ${#frontier[@]} -gt 0 ]]; do
    mapfile -t deps < <(dpkg-query -W -f='${Depends}, ${Pre-Depends}\n' "${frontier[@]}" \
      2>/dev/null | sed -e 's/([^)]*)//g; s/:any//g; s/[,|]/\n/g' | awk 'NF {print $1}' |
      sort -u)
    frontier=()
    for d in "${deps[@]}"; do
      [[ -n ${allowed[$d]:-} ]] && continue
      allowed[$d]="a dependency of $(basename "$runtime_list")"
      frontier+=("$d")
    done
  done
fi
declare -A cuda_soname_pkg=()  # soname glob -> package (for toolkits no package owns)
declare -a cuda_pkg_globs=()   # package names, {cuda} standing for any CUDA version
while read -r pkg globs; do
  cuda_pkg_globs+=("${pkg//\{cuda\}/*}")
  for g in $globs; do cuda_soname_pkg[$g]=$pkg; done
done < <(sed -e 's/#.*//' "$cuda_list" | awk 'NF')

is_elf() { [[ $(head -c 4 "$1" | od -An -c | tr -d ' ') == '177ELF' ]]; }
elves=()
while IFS= read -r -d '' f; do
  is_elf "$f" && elves+=("$f")
done < <(find "$dest" -type f -print0)
[[ ${#elves[@]} -gt 0 ]] || die "no ELF file was staged from '$build'"

ld_path=$(IFS=:; echo "${lib_dirs[*]}")
declare -A resolved=()  # "elf|soname" -> path ("" when not found)
declare -a edges=()     # "elf|soname"
for f in "${elves[@]}"; do
  mapfile -t needed < <(readelf -d --wide "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
  [[ ${#needed[@]} -gt 0 ]] || continue
  ldd_out=$(LD_LIBRARY_PATH=$ld_path ldd "$f" 2>&1) || die "ldd ${f#"$dest"} failed: $ldd_out"
  for n in "${needed[@]}"; do
    edges+=("$f|$n")
    path=$(awk -v n="$n" '$1 == n && $2 == "=>" {print $3; exit}' <<<"$ldd_out")
    [[ $path == not ]] && path=""
    # The loader itself appears without "=>".
    [[ -z $path ]] && path=$(awk -v n="$n" '$1 ~ "/"n"$" {print $1; exit}' <<<"$ldd_out")
    resolved[$f|$n]=$path
  done
done

# Owners of the system files, in one dpkg-query call: the path as resolved, its real path, and
# their twins across the /usr merge (dpkg records libc6's files under /lib, most others under /usr).
candidates() {
  local p=$1 r
  r=$(readlink -f "$p")
  for x in "$p" "$r"; do
    echo "$x"
    case $x in
      /usr/lib/*) echo "${x#/usr}" ;;
      /lib/* | /lib64/*) echo "/usr$x" ;;
    esac
  done
}
declare -A owner=()  # file -> package
mapfile -t system_files < <(for e in "${edges[@]}"; do
  p=${resolved[$e]}
  [[ -n $p && $p != "$dest"/* ]] && candidates "$p"
done | sort -u)
if [[ ${#system_files[@]} -gt 0 ]]; then
  while IFS= read -r line; do
    [[ $line == diversion* || $line != *": /"* ]] && continue
    pkgs=${line%%: /*}
    file=${line#*: }
    pkg=${pkgs%%,*}
    owner[$file]=${pkg%%:*}
  done < <(dpkg-query -S "${system_files[@]}" 2>/dev/null || true)
fi

declare -A used=()  # package -> 1
staged_edges=0
for e in "${edges[@]}"; do
  f=${e%%|*}
  n=${e#*|}
  rel=${f#"$dest"}
  path=${resolved[$e]}
  [[ -n $path ]] ||
    die "$rel needs $n, which is found neither in the staged tree nor on this machine"
  if [[ $path == "$dest"/* ]]; then
    staged_edges=$((staged_edges + 1))
    continue
  fi
  if [[ $sanitized == 1 && $n =~ ^lib(asan|ubsan)\.so ]]; then
    continue
  fi
  pkg=""
  while IFS= read -r c; do
    [[ -n ${owner[$c]:-} ]] && { pkg=${owner[$c]}; break; }
  done < <(candidates "$path")
  if [[ -n $pkg ]]; then
    [[ -n ${allowed[$pkg]:-} ]] && { used[$pkg]=1; continue; }
    if [[ $cuda == 1 ]]; then
      for g in "${cuda_pkg_globs[@]}"; do
        # shellcheck disable=SC2053  # a glob on purpose: {cuda} stands for any version
        [[ $pkg == $g ]] && { used[$pkg]=1; continue 2; }
      done
    fi
    die "$rel needs $n ($path), provided by package $pkg," \
      "which ${runtime_list#"$repo"/} does not list"
  fi
  for g in "${!cuda_soname_pkg[@]}"; do
    # shellcheck disable=SC2053
    if [[ $n == $g ]]; then
      [[ $cuda == 1 ]] || die "$rel needs $n ($path), a CUDA library: only the CUDA variant" \
        "(stage.sh --cuda, Dockerfile.cuda) has it, from package ${cuda_soname_pkg[$g]}"
      used[${cuda_soname_pkg[$g]}]=1
      continue 2
    fi
  done
  die "$rel needs $n ($path), which no Debian package owns and no line of" \
    "${cuda_list#"$repo"/} provides; the image would not have it"
done

# 4. The staged programs run.
if ! out=$(LD_LIBRARY_PATH=$ld_path "$dest/usr/bin/gangway" --help 2>&1); then
  die "/usr/bin/gangway --help failed in the staged tree: $(head -n 1 <<<"$out")"
fi
if [[ $sanitized == 0 ]]; then
  # No LD_LIBRARY_PATH: the module must find libgangway_kv through its own RUNPATH.
  module_dir=$dest/usr/lib/python3/dist-packages
  if compgen -G "$module_dir/gangway_kv*.so" >/dev/null; then
    [[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 is missing; needed to import gangway_kv"
    out=$(PYTHONPATH=$module_dir /usr/bin/python3 -c '
import gangway_kv as kv
m = kv.KvCacheManager(num_blocks=8, block_size=16)
print(m.allocate(1, list(range(20))).cached_tokens)' 2>&1) ||
      die "the staged Python module gangway_kv does not import: $(tail -n 1 <<<"$out")"
  fi
  command -v cc >/dev/null || die "'cc' is not installed; it is needed to check libgangway_kv"
  printf '%s\n' '#include <gangway/kv.h>' \
    'int main(void) { return gw_kv_api_version() == GW_KV_API_VERSION ? 0 : 1; }' >"$scratch/kv.c"
  out=$(cc -I"$dest/usr/include" "$scratch/kv.c" -L"$kv_lib_dir" -lgangway_kv -o "$scratch/kv" \
    2>&1 && LD_LIBRARY_PATH=$ld_path "$scratch/kv" 2>&1) ||
    die "a C program does not build and run against the staged libgangway_kv:" \
      "$(head -n 1 <<<"$out")"
fi
command -v c++ >/dev/null || die "'c++' is not installed; it is needed to check the C++ headers"
out=$(echo '#include <gangway/kv/manager.h>' |
  c++ -std=c++20 -fsyntax-only -I"$dest/usr/include" -x c++ - 2>&1) ||
  die "the staged C++ header gangway/kv/manager.h does not compile: $(head -n 1 <<<"$out")"

files=$(find "$dest" -type f | wc -l)
size=$(du -sm "$dest" | cut -f1)
echo "stage.sh: staged $files files ($size MB) from $build; ${#elves[@]} ELF files, whose" \
  "$((${#edges[@]})) library needs resolve in the staged tree ($staged_edges) or to packages:" \
  "$(printf '%s\n' "${!used[@]}" | sort | xargs)"
unused=$(for p in "${!allowed[@]}"; do
  if [[ ${allowed[$p]} == "$runtime_list" && -z ${used[$p]:-} ]]; then echo "$p"; fi
done | sort | xargs)
[[ -z $unused ]] || echo "stage.sh: listed, but no staged ELF file links them: $unused"
