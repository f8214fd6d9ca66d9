#!/usr/bin/env bash
# The runtime image, started as Kubernetes would start it: builds the image's
# root file system (deploy/image/build-rootfs.sh: debootstrap with only the
# runtime packages, then `cmake --install`), makes the secrets
# (deploy/make-secrets.sh), mounts them read-only, owned root:10001 and
# mode 0440 as the kubelet does with fsGroup 10001, starts the three
# services inside it (chroot, as user 10001:10001, with the environment the
# manifests give them) against a Redis with one ACL user per service, and
# takes screenings through them from outside.
#
#   tests/image/rootfs_test.sh SOURCE_DIR BUILD_DIR ROOTFS
#
# Needs root (debootstrap, mounts, chroot) and Debian's mirror the first
# time; exits 77 (ctest: skipped) without root.
set -euo pipefail
(($# == 3)) || { echo "usage: $0 SOURCE_DIR BUILD_DIR ROOTFS" >&2; exit 2; }
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
ROOTFS=$3
if [[ $(id -u) != 0 ]]; then
  echo "SKIPPED: needs root for debootstrap, mounts and chroot" >&2
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }

"$SRC/deploy/image/build-rootfs.sh" "$ROOTFS" "$BUILD"
ROOTFS=$(cd "$ROOTFS" && pwd)

# The installed binaries must not know the source tree: the chroot hides it,
# and their data is the installed copy.
for f in catalog/catalog.textproto rulesets/v2.textproto texts/person_texts.textproto \
  console/index.html console/app.js openapi/aqueduct.swagger.json; do
  [[ -s "$ROOTFS/usr/local/share/aqueduct/$f" ]] || fail "install left out share/aqueduct/$f"
done
for b in aqueduct-intake aqueduct-scoring aqueduct-referral aqueduct-gateway aqueductctl; do
  [[ -x "$ROOTFS/usr/local/bin/$b" ]] || fail "install left out bin/$b"
done
# Every shared library each binary needs is in the runtime packages.
missing=$(chroot "$ROOTFS" /bin/sh -c 'for b in /usr/local/bin/*; do ldd "$b" 2>&1; done' |
  grep 'not found' || true)
[[ -z "$missing" ]] || fail "libraries missing from deploy/image/runtime-packages.txt: $missing"

WORK=$(mktemp -d)
redis_pid=""
ns_pid=""
cleanup() {
  [[ -n "$ns_pid" ]] && kill -KILL "$ns_pid" 2>/dev/null
  [[ -n "$redis_pid" ]] && kill -TERM "$redis_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK" "$ROOTFS/tmp/aqueduct-test"
}
trap cleanup EXIT

"$SRC/deploy/make-secrets.sh" "$WORK/secrets" >/dev/null
# As the kubelet mounts Secrets and ConfigMaps into a pod with fsGroup
# 10001: owned root:10001, group-readable only, directories setgid.
MOUNTS=$WORK/mounts
for s in token-keys tls-intake tls-scoring tls-referral tls-gateway data-keys intake-signing gateway-signing \
  redis-intake redis-referral; do
  mkdir -p "$MOUNTS/$s"
  cp "$WORK/secrets/$s"/* "$MOUNTS/$s/"
  chown -R 0:10001 "$MOUNTS/$s"
  chmod 2750 "$MOUNTS/$s"
  chmod 0440 "$MOUNTS/$s"/*
done

# Redis on the host's loopback (the chroot shares the network), with the
# ACL users make-secrets.sh wrote and zero-loss durability as deployed.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
REDIS_PORT=6500
while port_busy "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --aclfile "$WORK/secrets/redis-server/users.acl" \
  --appendonly yes --appendfsync always --save "" >"$WORK/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
  REDISCLI_AUTH=$(cat "$WORK/secrets/redis-intake/password") redis-cli --user intake -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done
# The default user is off: no password, no access.
if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then fail "Redis answers without a user"; fi
# A service's user reaches only its own keys.
out=$(REDISCLI_AUTH=$(cat "$WORK/secrets/redis-referral/password") redis-cli --user referral -p "$REDIS_PORT" get aq:intake:x 2>&1)
[[ "$out" == *NOPERM* ]] || fail "referral's Redis user read intake's keys: $out"

# Inside a private mount and PID namespace: the secrets bind-mounted
# read-only where the manifests mount them, /proc, and the services run
# with chroot as 10001:10001 (supplementary group 10001, as fsGroup adds).
# When unshare ends (the cleanup kills it), its child, the namespace's
# first process, is killed (--kill-child), and with it every process in
# the namespace; the mounts go with the namespace.
mkdir -p "$ROOTFS/tmp/aqueduct-test"
chmod 1777 "$ROOTFS/tmp/aqueduct-test"
cat >"$WORK/inside.sh" <<'INSIDE'
set -euo pipefail
R=$1 M=$2 W=$3 REDIS_PORT=$4
CHROOT=$(command -v chroot)
mount -t proc proc "$R/proc"
for s in token-keys data-keys; do
  mkdir -p "$R/etc/aqueduct/$s"; mount --bind -o ro "$M/$s" "$R/etc/aqueduct/$s"
done
run() {  # run NAME TLS_SECRET ENV... -- ARGS...
  local name=$1 tls=$2; shift 2
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  # Each service sees only its own TLS Secret, at the same path.
  mkdir -p "$R/etc/aqueduct/tls-$name"
  mount --bind -o ro "$M/$tls" "$R/etc/aqueduct/tls-$name"
  env -i PATH=/usr/local/bin:/usr/bin:/bin "${envs[@]}" \
    AQUEDUCT_AUTH_KEYS=/etc/aqueduct/token-keys AQUEDUCT_AUTH_ISSUER=https://idp.example AQUEDUCT_AUTH_AUDIENCE=aqueduct \
    AQUEDUCT_TLS_CERT=/etc/aqueduct/tls-$name/tls.crt AQUEDUCT_TLS_KEY=/etc/aqueduct/tls-$name/tls.key \
    AQUEDUCT_TLS_CA=/etc/aqueduct/tls-$name/ca.crt \
    "$CHROOT" --userspec=10001:10001 --groups=10001 "$R" "/usr/local/bin/aqueduct-$name" \
    --listen=127.0.0.1:0 --port_file="/tmp/aqueduct-test/$name.port" \
    --metrics_listen=127.0.0.1:0 --metrics_port_file="/tmp/aqueduct-test/$name.metrics" "$@" \
    >"$W/$name.log" 2>&1 &
}
wait_port() { for _ in $(seq 100); do [[ -s "$R/tmp/aqueduct-test/$1.port" ]] && return; sleep 0.1; done; echo "no port from $1" >&2; cat "$W/$1.log" >&2; exit 1; }
mkdir -p "$R/etc/aqueduct/signing"; mount --bind -o ro "$M/intake-signing" "$R/etc/aqueduct/signing"
run scoring tls-scoring --
redis_env() {
  mkdir -p "$R/etc/aqueduct/redis-$1"; mount --bind -o ro "$M/redis-$1" "$R/etc/aqueduct/redis-$1"
  echo "AQUEDUCT_REDIS=127.0.0.1:$REDIS_PORT" "AQUEDUCT_REDIS_USER=$1" "AQUEDUCT_REDIS_PASSWORD_FILE=/etc/aqueduct/redis-$1/password"
}
# shellcheck disable=SC2046
run referral tls-referral $(redis_env referral) AQUEDUCT_DATA_KEYS_FILE=/etc/aqueduct/data-keys/data-keys --
wait_port scoring
wait_port referral
# shellcheck disable=SC2046
run intake tls-intake $(redis_env intake) AQUEDUCT_DATA_KEYS_FILE=/etc/aqueduct/data-keys/data-keys \
  AQUEDUCT_SERVICE_KEY=/etc/aqueduct/signing/intake-signing.pem AQUEDUCT_SERVICE_KEY_ID=intake -- \
  --scoring="127.0.0.1:$(cat "$R/tmp/aqueduct-test/scoring.port")" \
  --referral="127.0.0.1:$(cat "$R/tmp/aqueduct-test/referral.port")"
wait_port intake
# The HTTP gateway, with its own signing key for its one queue stream.
mkdir -p "$R/etc/aqueduct/gateway-signing"
mount --bind -o ro "$M/gateway-signing" "$R/etc/aqueduct/gateway-signing"
run gateway tls-gateway AQUEDUCT_SERVICE_KEY=/etc/aqueduct/gateway-signing/gateway-signing.pem \
  AQUEDUCT_SERVICE_KEY_ID=gateway -- \
  --intake="127.0.0.1:$(cat "$R/tmp/aqueduct-test/intake.port")" \
  --referral="127.0.0.1:$(cat "$R/tmp/aqueduct-test/referral.port")" \
  --scoring="127.0.0.1:$(cat "$R/tmp/aqueduct-test/scoring.port")"
wait_port gateway
echo ready >"$W/ready"
sleep 600  # until the test kills this namespace
INSIDE

unshare --mount --pid --fork --kill-child bash "$WORK/inside.sh" "$ROOTFS" "$MOUNTS" "$WORK" "$REDIS_PORT" >"$WORK/inside.log" 2>&1 &
ns_pid=$!
for _ in $(seq 200); do
  [[ -f "$WORK/ready" ]] && break
  kill -0 "$ns_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -f "$WORK/ready" ]]; then
  cat "$WORK/inside.log" "$WORK"/*.log >&2 || true
  fail "the services did not start inside the image"
fi

# Each service runs as 10001 and found its data in the install.
for name in scoring referral intake gateway; do
  pid=$(pgrep -f "^/usr/local/bin/aqueduct-$name" | head -1)
  [[ -n "$pid" ]] || fail "aqueduct-$name is not running"
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  [[ "$uid" == 10001 ]] || fail "aqueduct-$name runs as uid $uid, not 10001"
  [[ "$(readlink "/proc/$pid/root")" == "$ROOTFS" ]] || fail "aqueduct-$name is not inside the image"
done

port() { cat "$ROOTFS/tmp/aqueduct-test/$1.port"; }
export AQUEDUCT_INTAKE_ADDR=127.0.0.1:$(port intake)
export AQUEDUCT_REFERRAL_ADDR=127.0.0.1:$(port referral)
export AQUEDUCT_SCORING_ADDR=127.0.0.1:$(port scoring)
export AQUEDUCT_TLS_CA=$WORK/secrets/ca.crt
export AQUEDUCT_DEV_KEY=$WORK/secrets/idp-signing.pem AQUEDUCT_DEV_KEY_ID=idp
export AQUEDUCT_AUTH_ISSUER=https://idp.example AQUEDUCT_AUTH_AUDIENCE=aqueduct
CTL=$BUILD/tools/aqueductctl/aqueductctl
for _ in $(seq 60); do "$CTL" health --timeout=1 >/dev/null 2>&1 && break; sleep 0.5; done
"$CTL" health --timeout=2 || fail "the stack inside the image is not healthy"

# A screening routed to therapy (pending a clinician's review) and one with
# suicide risk (crisis resources at once, and an urgent case).
therapy=$("$CTL" demo --answers=2,2,2,2,1,1,1,0,0,2 --state=FL 2>&1) || fail "demo (therapy) failed: $therapy"
echo "$therapy"
grep -qi "therapy" <<<"$therapy" || fail "the moderate screening was not routed to therapy"
crisis=$("$CTL" demo --answers=1,1,0,1,0,0,0,0,1,1 2>&1) || fail "demo (crisis) failed: $crisis"
echo "$crisis"
grep -q "988" <<<"$crisis" || fail "the suicide-risk screening did not show 988"
queue=$("$CTL" queue --actor=dr-image -o json 2>&1) || fail "queue failed: $queue"
cases=$(grep -o '"name": *"referrals/' <<<"$queue" | wc -l)
((cases >= 2)) || fail "the clinician queue holds $cases cases, expected both screenings: $queue"

# The gateway inside the image: over HTTPS with the deployment's
# certificate, following referral's queue with its own service identity,
# serving the console and the OpenAPI document from the install, and
# refusing a call without a token.
gateway_url="https://localhost:$(port gateway)"
gw() { curl -sS --max-time 5 --cacert "$WORK/secrets/ca.crt" "$@"; }
for _ in $(seq 50); do
  gw "$gateway_url/healthz" 2>/dev/null | grep -q following && break
  sleep 0.2
done
health=$(gw "$gateway_url/healthz" 2>&1) || fail "the gateway's /healthz failed: $health"
grep -q following <<<"$health" || fail "the gateway does not follow referral's queue: $health"
# Each body is read whole before it is searched (grep -q stops reading at
# the first match, and curl then fails to write the rest).
console=$(gw "$gateway_url/console/") || fail "the gateway's /console/ failed"
grep -q '<html' <<<"$console" || fail "the gateway serves no console"
openapi=$(gw "$gateway_url/openapi.json") || fail "the gateway's /openapi.json failed"
grep -q '"swagger"' <<<"$openapi" || fail "the gateway serves no OpenAPI document"
code=$(gw -o /dev/null -w '%{http_code}' "$gateway_url/v1/referrals")
[[ "$code" == 401 ]] || fail "the gateway answered $code to a call without a token, not 401"

# /metrics answers from inside the image.
mport=$(cat "$ROOTFS/tmp/aqueduct-test/intake.metrics")
exec 3<>"/dev/tcp/127.0.0.1/$mport"
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
metrics=$(cat <&3)
grep -q 'grpc_server_handled_total{grpc_code="OK",grpc_method="CompleteScreening"' <<<"$metrics" ||
  fail "intake's /metrics has no completed screenings"

# No secret, answer or token in any log line.
for name in scoring referral intake gateway; do
  for secret in "$(cat "$WORK/secrets/redis-intake/password")" "$(sed -n 2p "$WORK/secrets/data-keys/data-keys" | cut -d' ' -f2)"; do
    if grep -qF "$secret" "$WORK/$name.log"; then fail "$name logged a secret"; fi
  done
done
echo "PASS: the image's root file system runs the three services and the gateway as 10001 with fsGroup-owned read-only secrets"
