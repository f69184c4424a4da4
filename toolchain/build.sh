#!/usr/bin/env bash
# Build clipper's toolchain (Pulumi engine + local Kubernetes API) from Go modules
# into a cache outside the repository, and print the bin directory.
#
#   toolchain/build.sh                   build what is missing (engine + cluster), print bin dir
#   toolchain/build.sh --only engine     pulumi, pulumi-language-python(-exec), pulumi-resource-kubernetes
#   toolchain/build.sh --only cluster    etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
#                                        helm (what the tests use besides the engine)
#   toolchain/build.sh --print-bin       print the bin dir; exit 1 if something is missing (no build)
#   toolchain/build.sh --update-modules  rewrite modules/*/go.mod+go.sum from versions.env (needs network)
#
# Cache: ${CLIPPER_CACHE:-$HOME/.cache/clipper}/toolchain/<key>/bin, <key> derived from
# every version (versions.env, requirements.txt, go version, wrapper modules).
# Go caches: ${CLIPPER_CACHE:-$HOME/.cache/clipper}/go/{mod,build}.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cache_root=${CLIPPER_CACHE:-$HOME/.cache/clipper}
requirements=${CLIPPER_REQUIREMENTS:-$repo/requirements.txt}

only=all
print_bin=0
update_modules=0
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=${2:?--only needs engine, cluster or all}; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    --print-bin) print_bin=1; shift ;;
    --update-modules) update_modules=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $only in engine|cluster|all) ;; *) echo "build.sh: --only must be engine, cluster or all" >&2; exit 2 ;; esac

say() { echo "[toolchain] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---- versions -----------------------------------------------------------------
# shellcheck source=versions.env
. "$here/versions.env"
req_version() { sed -n "s/^$1==\([^[:space:];#]*\).*/\1/p" "$requirements" | head -n1; }
pulumi_version=$(req_version pulumi)
pulumi_kubernetes_version=$(req_version pulumi-kubernetes)
[ -n "$pulumi_version" ] || die "no 'pulumi==X' line in $requirements"
[ -n "$pulumi_kubernetes_version" ] || die "no 'pulumi-kubernetes==X' line in $requirements"

cli_module=${PULUMI_CLI_MODULE_OVERRIDE:-v$pulumi_version}
provider_module=$PULUMI_KUBERNETES_PROVIDER_MODULE
case ${PULUMI_KUBERNETES_PROVIDER_STAMP:-release} in
  release) provider_stamp=$pulumi_kubernetes_version ;;
  module) provider_stamp=${provider_module#v} ;;
  *) provider_stamp=$PULUMI_KUBERNETES_PROVIDER_STAMP ;;
esac
kube_version=$KUBERNETES_VERSION                      # v1.33.13
kube_minor=$(echo "$kube_version" | cut -d. -f2)      # 33
kube_staging=v0.${kube_version#v1.}                   # v0.33.13
etcd_version=$ETCD_VERSION
kwok_version=$KWOK_VERSION
# Helm is not pinned in versions.env: the CLI is built from the Helm library version the
# Kubernetes provider module requires, so `helm template` renders charts as helm.v4.Chart does.
provider_requires() { # module -> the version modules/kubernetes-provider/go.mod requires
  awk -v m="$1" '($1 == m && $2 ~ /^v/) {print $2} ($1 == "require" && $2 == m) {print $3}' \
    "$here/modules/kubernetes-provider/go.mod" | head -n1
}
helm_version=$(provider_requires helm.sh/helm/v3)
[ -n "$helm_version" ] || die "modules/kubernetes-provider/go.mod does not require helm.sh/helm/v3"

# ---- Go environment -----------------------------------------------------------
command -v go >/dev/null || die "go is not installed"
export GOMODCACHE=$cache_root/go/mod
export GOCACHE=$cache_root/go/build
export GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local
# The checksum database reachable here lacks some Pulumi module versions; go.sum in
# each wrapper module still pins every hash.
export GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi

modules=(pulumi language-python kubernetes-provider kube etcd kwok helm) # helm after kubernetes-provider

# ---- --update-modules: versions.env -> go.mod/go.sum ----------------------------
if [ "$update_modules" = 1 ]; then
  for m in "${modules[@]}"; do
    d=$here/modules/$m
    say "updating modules/$m"
    case $m in
      pulumi) (cd "$d" && go mod edit -require=github.com/pulumi/pulumi/pkg/v3@"$cli_module" \
                 -require=github.com/pulumi/pulumi/sdk/v3@"$cli_module") ;;
      language-python) (cd "$d" && go mod edit -require=github.com/pulumi/pulumi/sdk/v3@"$cli_module") ;;
      kubernetes-provider) (cd "$d" && go mod edit -require=github.com/pulumi/pulumi-kubernetes/provider/v4@"$provider_module") ;;
      kube)
        gomod=$(cd "$d" && go mod download -json k8s.io/kubernetes@"$kube_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
        [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@$kube_version"
        args=(-require=k8s.io/kubernetes@"$kube_version")
        for s in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod"); do
          args+=(-replace="$s=$s@$kube_staging")
        done
        (cd "$d" && go mod edit "${args[@]}") ;;
      etcd) (cd "$d" && go mod edit -require=go.etcd.io/etcd/server/v3@"$etcd_version") ;;
      kwok) (cd "$d" && go mod edit -require=sigs.k8s.io/kwok@"$kwok_version") ;;
      helm)
        # Helm at the provider's version, and every module both build lists share (sprig, semver,
        # yaml, apimachinery...) at the provider's version too, until tidy changes nothing more.
        (cd "$d" && go mod edit -require=helm.sh/helm/v3@"$helm_version" && go mod tidy)
        for _ in 1 2 3 4 5; do
          args=()
          while read -r m v; do
            pv=$(provider_requires "$m")
            if [ -n "$pv" ] && [ "$pv" != "$v" ]; then args+=(-require="$m@$pv"); fi
          done < <(awk '($1 !~ /^(module|go|require|tool|replace|\))$/ && $2 ~ /^v/) {print $1, $2}
                        ($1 == "require" && $3 ~ /^v/) {print $2, $3}' "$d/go.mod")
          [ ${#args[@]} -gt 0 ] || break
          (cd "$d" && go mod edit "${args[@]}" && go mod tidy)
        done ;;
    esac
    (cd "$d" && go mod tidy)
  done
  say "modules updated; review and commit toolchain/modules/*/go.{mod,sum}"
  exit 0
fi

# ---- cache key ----------------------------------------------------------------
go_version=$(go env GOVERSION)
key=$(
  {
    echo "pulumi=$pulumi_version cli_module=$cli_module provider=$provider_module stamp=$provider_stamp"
    echo "kube=$kube_version etcd=$etcd_version kwok=$kwok_version go=$go_version"
    for m in "${modules[@]}"; do cat "$here/modules/$m"/go.mod "$here/modules/$m"/go.sum "$here/modules/$m"/*.go 2>/dev/null || true; done
  } | sha256sum | cut -c1-16
)
key_dir=$cache_root/toolchain/$key
bin=$key_dir/bin

engine_bins=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-kubernetes)
cluster_bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm)
case $only in
  engine) wanted=("${engine_bins[@]}") ;;
  cluster) wanted=("${cluster_bins[@]}") ;;
  all) wanted=("${engine_bins[@]}" "${cluster_bins[@]}") ;;
esac

missing() {
  local b out=()
  for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || out+=("$b"); done
  case " ${wanted[*]} " in *" kwok "*) [ -f "$key_dir/share/kwok/stages.yaml" ] || out+=(kwok-stages) ;; esac
  echo "${out[*]:-}"
}

todo=$(missing)
if [ -z "$todo" ]; then echo "$bin"; exit 0; fi
if [ "$print_bin" = 1 ]; then
  say "incomplete toolchain in $bin; missing: $todo (run toolchain/build.sh)"
  echo "$bin"
  exit 1
fi

# ---- build --------------------------------------------------------------------
mkdir -p "$bin" "$key_dir/logs" "$key_dir/src"
exec 9>"$key_dir/.lock"
if ! flock -n 9; then
  say "another build.sh is building $key; waiting for it"
  flock 9
fi
todo=$(missing)
if [ -z "$todo" ]; then echo "$bin"; exit 0; fi

# The wrapper modules must agree with versions.env.
has_version() { # file module version
  awk -v m="$2" -v v="$3" '($1 == m && $2 == v) || ($1 == "require" && $2 == m && $3 == v) {f = 1} END {exit !f}' "$1"
}
check() {
  has_version "$here/modules/$1/go.mod" "$2" "$3" ||
    die "modules/$1/go.mod does not require $2 $3 (versions.env); run toolchain/build.sh --update-modules"
}
check pulumi github.com/pulumi/pulumi/pkg/v3 "$cli_module"
check pulumi github.com/pulumi/pulumi/sdk/v3 "$cli_module"
check language-python github.com/pulumi/pulumi/sdk/v3 "$cli_module"
check kubernetes-provider github.com/pulumi/pulumi-kubernetes/provider/v4 "$provider_module"
check kube k8s.io/kubernetes "$kube_version"
grep -q "k8s.io/apiserver => k8s.io/apiserver $kube_staging" "$here/modules/kube/go.mod" ||
  die "modules/kube/go.mod does not replace the staging modules with $kube_staging; run toolchain/build.sh --update-modules"
check etcd go.etcd.io/etcd/server/v3 "$etcd_version"
check kwok sigs.k8s.io/kwok "$kwok_version"
check helm helm.sh/helm/v3 "$helm_version"

# name module package ldflags  (in build order)
kv=k8s.io/component-base/version
cv=k8s.io/client-go/pkg/version
kube_ld="-X $kv.gitVersion=$kube_version -X $kv.gitMajor=1 -X $kv.gitMinor=$kube_minor -X $kv.gitTreeState=clean"
kube_ld+=" -X $cv.gitVersion=$kube_version -X $cv.gitMajor=1 -X $cv.gitMinor=$kube_minor -X $cv.gitTreeState=clean"
steps=()
if [ "$only" != cluster ]; then
  steps+=("pulumi|pulumi|github.com/pulumi/pulumi/pkg/v3/cmd/pulumi|-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli_module")
  steps+=("pulumi-language-python|language-python|.|-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli_module")
  steps+=("pulumi-resource-kubernetes|kubernetes-provider|.|-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$provider_stamp -X main.renderKubeVersion=$kube_version")
fi
if [ "$only" != engine ]; then
  steps+=("etcd|etcd|go.etcd.io/etcd/server/v3|")
  steps+=("kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|$kube_ld")
  steps+=("kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|$kube_ld")
  steps+=("kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|$kube_ld")
  steps+=("kwok|kwok|sigs.k8s.io/kwok/cmd/kwok|")
  # As Helm's own release builds stamp it, with the cluster's minor as the default Kubernetes
  # version (tests pass --kube-version anyway).
  hv=helm.sh/helm/v3
  steps+=("helm|helm|$hv/cmd/helm|-X $hv/internal/version.version=$helm_version -X $hv/internal/version.gitTreeState=clean -X $hv/pkg/chartutil.k8sVersionMajor=1 -X $hv/pkg/chartutil.k8sVersionMinor=$kube_minor -X $hv/pkg/lint/rules.k8sVersionMajor=1 -X $hv/pkg/lint/rules.k8sVersionMinor=$kube_minor")
fi

# Extra files a module needs beside its sources, copied from the module cache.
prepare() { # name src_dir
  case $1 in
    pulumi-resource-kubernetes)
      local dir
      dir=$(cd "$2" && go mod download github.com/pulumi/pulumi-kubernetes/provider/v4 &&
        go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
      python3 - "$dir/cmd/pulumi-resource-kubernetes/schema.json" "$2/schema.json" "$provider_stamp" <<'PY'
import json, sys
src, dst, version = sys.argv[1:]
with open(src) as f:
    schema = json.load(f)
schema["version"] = version
with open(dst, "w") as f:
    json.dump(schema, f, separators=(",", ":"))
PY
      cp "$dir/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "$2/terraform-mapping.json" ;;
  esac
}
after() { # name src_dir
  case $1 in
    pulumi-language-python)
      # The runner script comes from the sdk/v3 release matching the Python SDK
      # (requirements.txt), which the proxy does serve.
      local dir
      dir=$(cd "$2" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$pulumi_version" |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
      [ -d "$dir" ] || return 1
      install -m 0755 "$dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec" ;;
    kwok)
      # kwok ships no default stages: assemble the upstream "fast" node/pod stages.
      local dir f
      dir=$(cd "$2" && go mod download sigs.k8s.io/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
      [ -d "$dir" ] || return 1
      mkdir -p "$key_dir/share/kwok"
      for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        echo "---"
        cat "$dir/kustomize/stage/$f" || return 1
      done >"$key_dir/share/kwok/.stages.yaml.tmp" || return 1
      mv -f "$key_dir/share/kwok/.stages.yaml.tmp" "$key_dir/share/kwok/stages.yaml" ;;
  esac
}
# Whether a binary and the files installed with it are all present.
complete() { # name
  case $1 in
    pulumi-language-python) [ -x "$bin/$1" ] && [ -x "$bin/pulumi-language-python-exec" ] ;;
    kwok) [ -x "$bin/$1" ] && [ -f "$key_dir/share/kwok/stages.yaml" ] ;;
    *) [ -x "$bin/$1" ] ;;
  esac
}

total=${#steps[@]}
n=0
start_all=$SECONDS
say "building into $bin (key $key, go $go_version, 2 parallel jobs)"
for step in "${steps[@]}"; do
  IFS='|' read -r name mod pkg ld <<<"$step"
  n=$((n + 1))
  if complete "$name"; then continue; fi
  say "building $name ($n/$total)..."
  t0=$SECONDS
  src=$key_dir/src/$mod
  rm -rf "$src"
  mkdir -p "$src"
  cp "$here/modules/$mod"/go.mod "$here/modules/$mod"/go.sum "$src/"
  cp "$here/modules/$mod"/*.go "$src/" 2>/dev/null || true
  log=$key_dir/logs/$name.log
  if ! (
    set -e
    cd "$src"
    prepare "$name" "$src"
    go build -p 2 -trimpath -ldflags "-s -w $ld" -o "$bin/.$name.tmp" "$pkg"
  ) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building $name failed after $((SECONDS - t0))s; full log: $log"
  fi
  after "$name" "$src" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "installing the files that go with $name failed; full log: $log"; }
  mv -f "$bin/.$name.tmp" "$bin/$name"
  dt=$((SECONDS - t0))
  echo "$name ${dt}s" >>"$key_dir/build-times.txt"
  say "built $name in ${dt}s (total $((SECONDS - start_all))s)"
done

todo=$(missing)
[ -z "$todo" ] || die "still missing after build: $todo"
say "done in $((SECONDS - start_all))s"
echo "$bin"
