#!/usr/bin/env bash
# A throwaway local Kubernetes API for tests: etcd + kube-apiserver +
# kube-controller-manager + kube-scheduler + kwok (fake nodes, fake pod status),
# all on 127.0.0.1 with free ephemeral ports, built by toolchain/build.sh.
#
#   toolchain/cluster.sh up       start it (waits for /readyz and a Ready node)
#   toolchain/cluster.sh down     stop everything and delete its data
#   toolchain/cluster.sh status   exit 0 and say "up" if it is running, else exit 3
#   toolchain/cluster.sh env      print `export KUBECONFIG=...` for eval
#
# State: ${CLIPPER_CLUSTER_DIR:-<repo>/.state/cluster}: kubeconfig (admin, system:masters),
# state.env (pids, ports, data dir). Data, certificates and logs live in a temporary
# directory that `down` removes. Clusters in different CLIPPER_CLUSTER_DIRs are independent.
# Binaries: $CLIPPER_TOOLCHAIN_BIN if set, else `toolchain/build.sh --print-bin --only cluster`.
# Nodes: $CLIPPER_CLUSTER_NODES fake nodes (default 2), zones a, b, a, b...
# Admission webhooks: off unless $CLIPPER_CLUSTER_WEBHOOKS=on. kwok runs no containers, so the
# webhooks that add-on charts register (cert-manager's, External Secrets', ingress-nginx's) could
# never answer, and their failurePolicy Fail would reject every object they watch. Everything
# else, CRD schema validation and strict field validation included, is the API server's own.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster_dir=$(realpath -m "${CLIPPER_CLUSTER_DIR:-$repo/.state/cluster}")
state=$cluster_dir/state.env
kubeconfig=$cluster_dir/kubeconfig
nodes=${CLIPPER_CLUSTER_NODES:-2}
up_timeout=${CLIPPER_CLUSTER_TIMEOUT:-90}

say() { echo "[cluster] $*" >&2; }

load_state() {
  data_dir='' pids=''
  # shellcheck disable=SC1090
  [ -f "$state" ] && . "$state"
  return 0
}

# A pid is ours only if its command line mentions our data dir (guards against reuse).
ours() { # pid
  [ -n "$data_dir" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$data_dir"
}

is_up() {
  load_state
  [ -n "$pids" ] || return 1
  local p
  for p in $pids; do ours "${p#*=}" || return 1; done
  kubectl --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

stop_all() {
  load_state
  local p pid name left
  # Reverse start order: kwok, scheduler, controller-manager, apiserver, etcd.
  for p in $(echo "$pids" | tr ' ' '\n' | tac); do
    pid=${p#*=}
    if ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 50); do
    left=''
    for p in $pids; do pid=${p#*=}; ours "$pid" && left="$left ${p%%=*}"; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  for p in $pids; do
    pid=${p#*=} name=${p%%=*}
    if ours "$pid"; then say "killing $name ($pid)"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$data_dir" ] && [ -d "$data_dir" ]; then rm -rf "$data_dir"; fi
  rm -f "$state" "$kubeconfig"
}

show_logs() {
  local f
  for f in "$data_dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "----- last lines of $(basename "$f") -----" >&2
    tail -n 15 "$f" >&2
  done
}

free_ports() { # n
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

gen_certs() { # dir
  local d=$1
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  key "$d/ca.key"
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=clipper-test-ca" -days 3650 -out "$d/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  leaf() { # name subject extended-key-usage [subjectAltName]
    key "$d/$1.key"
    openssl req -new -key "$d/$1.key" -subj "$2" -out "$d/$1.csr"
    {
      echo "basicConstraints=CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$3"
      [ -z "${4:-}" ] || echo "subjectAltName=$4"
    } >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 365 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
  }
  leaf apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  leaf admin "/O=system:masters/CN=clipper-admin" clientAuth
  leaf controller-manager "/CN=system:kube-controller-manager" clientAuth
  leaf scheduler "/CN=system:kube-scheduler" clientAuth
  leaf kwok "/O=system:masters/CN=kwok" clientAuth
  # Service-account token signing key pair.
  key "$d/sa.key"
  openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

write_kubeconfig() { # out cert-name server pki-dir
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: clipper-local
  cluster:
    server: $3
    certificate-authority-data: $($b64 <"$4/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$4/$2.crt")
    client-key-data: $($b64 <"$4/$2.key")
contexts:
- name: clipper-local
  context: {cluster: clipper-local, user: $2}
current-context: clipper-local
EOF
  chmod 600 "$1"
}

start() { # name binary args...
  local name=$1
  shift
  setsid "$@" >"$data_dir/logs/$name.log" 2>&1 </dev/null 8>&- &
  pids="$pids $name=$!"
  save_state
}

save_state() {
  cat >"$state" <<EOF
data_dir='$data_dir'
pids='${pids# }'
etcd_port='${etcd_port:-}'
apiserver_port='${apiserver_port:-}'
EOF
}

wait_for() { # description seconds command...
  local what=$1 secs=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    local p
    for p in $pids; do
      ours "${p#*=}" || { say "${p%%=*} exited while waiting for $what"; return 1; }
    done
    [ $SECONDS -lt $deadline ] || { say "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.3
  done
}

node_ready() {
  kubectl --kubeconfig "$kubeconfig" get nodes \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -q True
}

cmd_up() {
  if is_up; then say "already up ($kubeconfig)"; return 0; fi
  load_state
  if [ -n "$pids" ] || [ -n "$data_dir" ]; then say "cleaning up a previous, dead cluster"; stop_all; fi

  local bin
  if [ -n "${CLIPPER_TOOLCHAIN_BIN:-}" ]; then
    bin=$CLIPPER_TOOLCHAIN_BIN
  else
    bin=$("$here/build.sh" --print-bin --only cluster) ||
      { say "cluster binaries are not built; run: toolchain/build.sh --only cluster"; return 1; }
  fi
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    [ -x "$bin/$b" ] || { say "missing $bin/$b"; return 1; }
  done
  local stages=$bin/../share/kwok/stages.yaml
  [ -f "$stages" ] || { say "missing $stages (run toolchain/build.sh --only cluster)"; return 1; }
  command -v kubectl >/dev/null || { say "kubectl is required"; return 1; }
  command -v openssl >/dev/null || { say "openssl is required"; return 1; }

  mkdir -p "$cluster_dir"
  data_dir=$(mktemp -d "${TMPDIR:-/tmp}/clipper-cluster.XXXXXX")
  pids=''
  save_state
  mkdir -p "$data_dir/logs" "$data_dir/pki"
  mkdir -m 700 "$data_dir/etcd"
  local t0=$SECONDS
  trap 'trap - ERR; say "up failed; tearing down"; show_logs; stop_all; exit 1' ERR
  trap 'trap - ERR; say "interrupted; tearing down"; stop_all; exit 130' INT TERM

  local ports etcd_peer_port
  ports=$(free_ports 3)
  read -r etcd_port etcd_peer_port apiserver_port <<<"$ports"
  save_state
  gen_certs "$data_dir/pki"
  local pki=$data_dir/pki server=https://127.0.0.1:$apiserver_port
  write_kubeconfig "$kubeconfig" admin "$server" "$pki"
  write_kubeconfig "$data_dir/controller-manager.kubeconfig" controller-manager "$server" "$pki"
  write_kubeconfig "$data_dir/scheduler.kubeconfig" scheduler "$server" "$pki"
  write_kubeconfig "$data_dir/kwok.kubeconfig" kwok "$server" "$pki"

  start etcd "$bin/etcd" --name clipper --data-dir "$data_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "clipper=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync --log-level warn

  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" --etcd-prefix /registry \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
    --cert-dir "$data_dir/pki/apiserver-generated" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    $([ "${CLIPPER_CLUSTER_WEBHOOKS:-off}" = on ] || echo --disable-admission-plugins ValidatingAdmissionWebhook,MutatingAdmissionWebhook) \
    --allow-privileged=true --endpoint-reconciler-type none --profiling=false --v=1

  wait_for "kube-apiserver /readyz" "$up_timeout" \
    kubectl --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$data_dir/controller-manager.kubeconfig" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range 10.0.0.0/24 \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --leader-elect=false --secure-port 0 --profiling=false --v=1
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$data_dir/scheduler.kubeconfig" --leader-elect=false --secure-port 0 --profiling=false --v=1
  start kwok "$bin/kwok" --config "$stages" \
    --kubeconfig "$data_dir/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 10.255.0.1 --node-lease-duration-seconds 40

  local i zone
  for i in $(seq 1 "$nodes"); do
    if [ $((i % 2)) = 1 ]; then zone=a; else zone=b; fi
    kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: kwok
    topology.kubernetes.io/zone: $zone
    topology.kubernetes.io/region: local
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
  wait_for "a Ready kwok node" "$up_timeout" node_ready
  trap - ERR INT TERM
  say "up in $((SECONDS - t0))s: apiserver https://127.0.0.1:$apiserver_port, kubeconfig $kubeconfig"
}

cmd_down() {
  load_state
  if [ -z "$pids" ] && [ -z "$data_dir" ]; then say "not running"; rm -f "$kubeconfig"; return 0; fi
  stop_all
  say "down"
}

cmd_status() {
  if is_up; then
    echo "up: apiserver https://127.0.0.1:$apiserver_port, kubeconfig $kubeconfig, data $data_dir"
    return 0
  fi
  load_state
  if [ -n "$pids" ]; then echo "broken: some processes are gone or the apiserver is not ready (run down)"; else echo "down"; fi
  return 3
}

lock() { # serialize up/down on the same cluster dir
  mkdir -p "$cluster_dir"
  exec 8>"$cluster_dir/.lock"
  flock 8
}

case ${1:-} in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  env) echo "export KUBECONFIG=$kubeconfig" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
