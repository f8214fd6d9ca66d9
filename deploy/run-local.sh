#!/usr/bin/env bash
# Brings up the whole Aqueduct stack on this machine and shows how to use it:
# installs what is missing, builds, starts a private redis-server (AOF on,
# data under .aqueduct/redis) unless AQUEDUCT_REDIS names one, starts the
# scoring, referral and intake services and the HTTP/JSON gateway with the
# clinician console, waits until all report SERVING, prints their addresses
# and a copy-paste way to try a screening, and stops everything cleanly on
# Ctrl-C.
#
# Settings (environment):
#   AQUEDUCT_REDIS        use this Redis (host:port or unix:/path) instead of
#                         starting one (its password, if any, in
#                         AQUEDUCT_REDIS_PASSWORD_FILE or AQUEDUCT_REDIS_PASSWORD);
#                         the private one listens on 127.0.0.1 only, with a
#                         password made on first use
#   AQUEDUCT_REDIS_PORT   port of the private Redis (default: first free port
#                         from 6390; never 6379, so a system Redis is left alone)
#   AQUEDUCT_REDIS_FSYNC  the private Redis's appendfsync: always (default:
#                         no acknowledged write lost in a crash) or everysec
#                         (faster, can lose up to a second of them)
#   AQUEDUCT_INTAKE_PORT / AQUEDUCT_SCORING_PORT / AQUEDUCT_REFERRAL_PORT
#                         service ports (defaults 7100 / 7101 / 7102)
#   AQUEDUCT_GATEWAY_PORT the HTTP/JSON gateway and console (default 7180)
#   AQUEDUCT_INTAKE_METRICS_PORT / AQUEDUCT_SCORING_METRICS_PORT /
#   AQUEDUCT_REFERRAL_METRICS_PORT
#                         Prometheus /metrics ports (defaults 7110 / 7111 / 7112)
#   AQUEDUCT_STATE_DIR    where Redis data, logs and the local keys go
#                         (default ./.aqueduct)
#
# The services speak TLS with certificates from a private CA made on first
# use under $AQUEDUCT_STATE_DIR/tls (intake calls the others with mutual
# TLS); clients trust it with AQUEDUCT_TLS_CA.
#
# Every call needs a bearer token. On first use this script makes a local
# development signing key (dev) and intake's own key (intake) with openssl
# under $AQUEDUCT_STATE_DIR/auth (never in the repository); the services
# trust their public keys, and aqueductctl mints tokens with the dev key
# (AQUEDUCT_DEV_KEY), or prints one: aqueductctl token --role=... --sub=...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

STATE=${AQUEDUCT_STATE_DIR:-$ROOT/.aqueduct}
LOGS=$STATE/logs
BUILD_DIR=${AQUEDUCT_BUILD_DIR:-$ROOT/build}
INTAKE_PORT=${AQUEDUCT_INTAKE_PORT:-7100}
SCORING_PORT=${AQUEDUCT_SCORING_PORT:-7101}
REFERRAL_PORT=${AQUEDUCT_REFERRAL_PORT:-7102}
GATEWAY_PORT=${AQUEDUCT_GATEWAY_PORT:-7180}
# Prometheus metrics, plaintext HTTP on loopback: /metrics of each service
# (next to the service ports; 9100 would meet node_exporter's).
INTAKE_METRICS_PORT=${AQUEDUCT_INTAKE_METRICS_PORT:-7110}
SCORING_METRICS_PORT=${AQUEDUCT_SCORING_METRICS_PORT:-7111}
REFERRAL_METRICS_PORT=${AQUEDUCT_REFERRAL_METRICS_PORT:-7112}

say() { printf '[run-local] %s\n' "$*"; }
die() { printf '[run-local] error: %s\n' "$*" >&2; exit 1; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

say "checking dependencies"
./scripts/setup.sh
say "building (first time takes a few minutes on 2 cores)"
AQUEDUCT_BUILD_DIR=$BUILD_DIR ./scripts/build.sh aqueduct-intake aqueduct-scoring aqueduct-referral aqueduct-gateway aqueductctl >/dev/null \
  || die "build failed; run ./scripts/build.sh to see why"

for p in "$INTAKE_PORT" "$SCORING_PORT" "$REFERRAL_PORT" "$GATEWAY_PORT"; do
  port_busy "$p" && die "port $p is already in use (another Aqueduct still running?). Stop it, or set AQUEDUCT_INTAKE_PORT / AQUEDUCT_SCORING_PORT / AQUEDUCT_REFERRAL_PORT / AQUEDUCT_GATEWAY_PORT."
done
for p in "$INTAKE_METRICS_PORT" "$SCORING_METRICS_PORT" "$REFERRAL_METRICS_PORT"; do
  port_busy "$p" && die "metrics port $p is already in use (another Aqueduct still running?). Stop it, or set AQUEDUCT_INTAKE_METRICS_PORT / AQUEDUCT_SCORING_METRICS_PORT / AQUEDUCT_REFERRAL_METRICS_PORT."
done
mkdir -p "$STATE/redis" "$LOGS"

# Local signing keys, made once: private keys readable by this user only.
AUTH=$STATE/auth
mkdir -p "$AUTH/keys"
chmod 700 "$AUTH"
for kid in dev intake gateway; do
  if [[ ! -s "$AUTH/$kid-signing.pem" ]]; then
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$AUTH/$kid-signing.pem" 2>/dev/null) \
      || die "openssl could not make a signing key in $AUTH"
    openssl pkey -in "$AUTH/$kid-signing.pem" -pubout -out "$AUTH/keys/$kid.pem" 2>/dev/null \
      || die "openssl could not write the public key for $kid"
    say "made the local $kid signing key ($AUTH/$kid-signing.pem)"
  fi
done
# What each key may sign (common/auth/README.md): the dev key stands in
# for an identity provider (people and staff), intake's key only intake's
# own service tokens, the gateway's only its own (its one queue stream).
echo "patient clinician physician batch operator" > "$AUTH/keys/dev.roles"
echo "service:intake" > "$AUTH/keys/intake.roles"
echo "service:gateway" > "$AUTH/keys/gateway.roles"
export AQUEDUCT_AUTH_KEYS=$AUTH/keys
# The keys that seal answers, results and reasons in Redis, and the key
# that pseudonymises user ids in key names: made once, this user only.
if [[ ! -s "$AUTH/data-keys" ]]; then
  # Data an older build stored unencrypted cannot be opened with new keys:
  # set it aside (nothing is deleted) so this run starts clean.
  if [[ -n "$(ls -A "$STATE/redis" 2>/dev/null)" ]]; then
    mv "$STATE/redis" "$STATE/redis.before-encryption.$(date +%Y%m%d%H%M%S)"
    mkdir -p "$STATE/redis"
    say "moved Redis data from an older build (stored unencrypted) aside, next to $STATE/redis"
  fi
  (umask 077 && printf '# data keys: the first seals, the rest open (rotation)\nk1 %s\npseudonym %s\n' \
    "$(openssl rand -base64 32)" "$(openssl rand -base64 32)" >"$AUTH/data-keys") || die "openssl could not make the data keys"
  say "made the local data keys ($AUTH/data-keys)"
fi
export AQUEDUCT_DATA_KEYS_FILE=$AUTH/data-keys

# A private CA and a certificate per service, made once with openssl: the
# services speak TLS, and intake calls scoring and referral with mutual TLS
# (its certificate names it; a service token is only accepted with it).
TLS=$STATE/tls
mkdir -p "$TLS"
chmod 700 "$TLS"
if [[ ! -s "$TLS/ca.pem" ]]; then
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/ca-key.pem" 2>/dev/null) \
    || die "openssl could not make the local CA key"
  openssl req -x509 -new -key "$TLS/ca-key.pem" -subj "/CN=Aqueduct local CA" -days 825 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$TLS/ca.pem" 2>/dev/null || die "openssl could not make the local CA"
  say "made a private CA for the local stack ($TLS/ca.pem)"
fi
for svc in intake scoring referral gateway; do
  if [[ ! -s "$TLS/$svc.pem" ]]; then
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/$svc-key.pem" 2>/dev/null) \
      || die "openssl could not make the $svc key"
    openssl req -new -key "$TLS/$svc-key.pem" -subj "/CN=$svc" -out "$TLS/$svc.csr" 2>/dev/null \
      || die "openssl could not make the $svc request"
    printf 'subjectAltName=DNS:localhost,DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' "$svc" >"$TLS/$svc.ext"
    openssl x509 -req -in "$TLS/$svc.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca-key.pem" -CAcreateserial \
      -days 397 -extfile "$TLS/$svc.ext" -out "$TLS/$svc.pem" 2>/dev/null || die "openssl could not sign the $svc certificate"
    rm -f "$TLS/$svc.csr" "$TLS/$svc.ext"
  fi
done
export AQUEDUCT_TLS_CA=$TLS/ca.pem

pids=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  # Services first (they drain in-flight calls), Redis last (flushes its AOF).
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  say "stopped; data kept in $STATE/redis"
}
on_signal() {
  cleanup
  exit 0
}
trap on_signal INT TERM
trap cleanup EXIT

if [[ -n "${AQUEDUCT_REDIS:-}" ]]; then
  REDIS=$AQUEDUCT_REDIS
  say "using the configured Redis at $REDIS"
else
  REDIS_PORT=${AQUEDUCT_REDIS_PORT:-6390}
  # Zero acknowledged-write loss by default (README "Durability").
  REDIS_FSYNC=${AQUEDUCT_REDIS_FSYNC:-always}
  case "$REDIS_FSYNC" in
    always | everysec) ;;
    *) die "AQUEDUCT_REDIS_FSYNC=$REDIS_FSYNC: must be always or everysec" ;;
  esac
  if [[ -z "${AQUEDUCT_REDIS_PORT:-}" ]]; then
    while port_busy "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
  elif port_busy "$REDIS_PORT"; then
    die "AQUEDUCT_REDIS_PORT=$REDIS_PORT is in use"
  fi
  REDIS=127.0.0.1:$REDIS_PORT
  # A password made once, kept in a file (never on a command line): Redis
  # reads it from its config file, the services and aqueductctl from
  # AQUEDUCT_REDIS_PASSWORD_FILE.
  if [[ ! -s "$AUTH/redis-password" ]]; then
    (umask 077 && openssl rand -hex 24 >"$AUTH/redis-password") || die "openssl could not make the Redis password"
  fi
  (umask 077 && printf 'requirepass %s\n' "$(cat "$AUTH/redis-password")" >"$AUTH/redis.conf")
  export AQUEDUCT_REDIS_PASSWORD_FILE=$AUTH/redis-password
  redis-server "$AUTH/redis.conf" --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --dir "$STATE/redis" --appendonly yes --appendfsync "$REDIS_FSYNC" --save "" \
    --hash-max-listpack-value 2048 --daemonize no >"$LOGS/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    REDISCLI_AUTH=$(cat "$AUTH/redis-password") redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  REDISCLI_AUTH=$(cat "$AUTH/redis-password") redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 \
    || die "redis-server did not start; see $LOGS/redis.log"
  say "redis-server on $REDIS (loopback only, password in $AUTH/redis-password, AOF fsynced $REDIS_FSYNC, data in $STATE/redis)"
fi

export AQUEDUCT_REDIS=$REDIS
"$BUILD_DIR/services/scoring/aqueduct-scoring" --listen "127.0.0.1:$SCORING_PORT" \
  --tls_cert "$TLS/scoring.pem" --tls_key "$TLS/scoring-key.pem" \
  --catalog "$ROOT/data/catalog/catalog.textproto" \
  --metrics_listen "127.0.0.1:$SCORING_METRICS_PORT" >"$LOGS/scoring.log" 2>&1 &
pids+=($!)
"$BUILD_DIR/services/referral/aqueduct-referral" --listen "127.0.0.1:$REFERRAL_PORT" \
  --tls_cert "$TLS/referral.pem" --tls_key "$TLS/referral-key.pem" \
  --metrics_listen "127.0.0.1:$REFERRAL_METRICS_PORT" >"$LOGS/referral.log" 2>&1 &
pids+=($!)
"$BUILD_DIR/services/intake/aqueduct-intake" --listen "127.0.0.1:$INTAKE_PORT" \
  --scoring "127.0.0.1:$SCORING_PORT" --referral "127.0.0.1:$REFERRAL_PORT" \
  --service_key "$AUTH/intake-signing.pem" --service_key_id intake \
  --tls_cert "$TLS/intake.pem" --tls_key "$TLS/intake-key.pem" \
  --metrics_listen "127.0.0.1:$INTAKE_METRICS_PORT" >"$LOGS/intake.log" 2>&1 &
pids+=($!)
# The HTTP/JSON gateway and the console: HTTPS with the local CA's
# certificate; it calls intake, referral and scoring with mutual TLS.
"$BUILD_DIR/services/gateway/aqueduct-gateway" --listen "127.0.0.1:$GATEWAY_PORT" \
  --intake "127.0.0.1:$INTAKE_PORT" --referral "127.0.0.1:$REFERRAL_PORT" --scoring "127.0.0.1:$SCORING_PORT" \
  --service_key "$AUTH/gateway-signing.pem" --service_key_id gateway \
  --tls_cert "$TLS/gateway.pem" --tls_key "$TLS/gateway-key.pem" >"$LOGS/gateway.log" 2>&1 &
pids+=($!)

export AQUEDUCT_INTAKE_ADDR=127.0.0.1:$INTAKE_PORT
export AQUEDUCT_SCORING_ADDR=127.0.0.1:$SCORING_PORT
export AQUEDUCT_REFERRAL_ADDR=127.0.0.1:$REFERRAL_PORT
CTL=$BUILD_DIR/tools/aqueductctl/aqueductctl
ready=0
for _ in $(seq 60); do
  if "$CTL" health --timeout=1 >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
"$CTL" health --timeout=1 || true
((ready)) || die "the stack did not become healthy in 30 s; see the logs in $LOGS"
gateway=0
for _ in $(seq 40); do
  if curl -fsS --cacert "$TLS/ca.pem" "https://localhost:$GATEWAY_PORT/healthz" 2>/dev/null | grep -q following; then gateway=1; break; fi
  sleep 0.25
done
((gateway)) || die "the gateway did not start following the queue in 10 s; see $LOGS/gateway.log"

cat <<INFO

Aqueduct is running.
  intake    127.0.0.1:$INTAKE_PORT   (aqueduct.intake.v1.IntakeService)
  scoring   127.0.0.1:$SCORING_PORT   (aqueduct.scoring.v1.ScoringService)
  referral  127.0.0.1:$REFERRAL_PORT   (aqueduct.referral.v1.ReferralService)
  gateway   https://localhost:$GATEWAY_PORT   (HTTP/JSON: /v1/..., OpenAPI at /openapi.json)
  console   https://localhost:$GATEWAY_PORT/console/   (sign in with a token from
            $CTL token --role=physician --sub=dr-demo --states=NJ,NY,FL;
            the browser must trust $TLS/ca.pem, or accept its warning)
  redis     $REDIS
  logs      $LOGS/*.log  (JSON lines; never answers or identities)
  metrics   http://127.0.0.1:$INTAKE_METRICS_PORT/metrics, :$SCORING_METRICS_PORT (scoring), :$REFERRAL_METRICS_PORT (referral)
            (Prometheus text; alerting rules in deploy/prometheus/alerts.yml)

Try it from another terminal (every call carries a token; with
AQUEDUCT_DEV_KEY set, aqueductctl mints one for each command: a patient for
screen/results/demo, a physician licensed everywhere for the queue, the
batch identity for rescore):
  export AQUEDUCT_INTAKE_ADDR=127.0.0.1:$INTAKE_PORT AQUEDUCT_REFERRAL_ADDR=127.0.0.1:$REFERRAL_PORT AQUEDUCT_SCORING_ADDR=127.0.0.1:$SCORING_PORT
  export AQUEDUCT_TLS_CA=$TLS/ca.pem AQUEDUCT_DEV_KEY=$AUTH/dev-signing.pem AQUEDUCT_DEV_KEY_ID=dev
  $CTL demo --answers=1,1,0,1,1,0,0,0,0,1           # mild: self-help plan
  $CTL demo --answers=2,2,2,2,1,1,1,0,0,2 --state=FL # moderate: therapy, pending review
  $CTL demo --answers=1,1,0,1,0,0,0,0,1,1           # item 9 > 0: crisis resources (988)
  $CTL queue --actor=dr-demo                         # the clinician queue (-o json, --all)
  $CTL queue --actor=nurse --role=clinician --states=NY  # a clinician licensed in NY only
  $CTL claim referrals/<id>                          # claim a case from the queue
  $CTL screen --user=me                              # take a screening in the terminal
  $CTL rescore --ruleset=v1 --dry-run                # what a re-score would change
  $CTL token --role=patient --sub=me                 # a token for any gRPC client
  $CTL health
  $CTL help                                          # every command; help <command> for one

Any gRPC client works from the protos in protos/ (server reflection is on):
TLS, trusting $TLS/ca.pem, with "authorization: Bearer <token>". Or HTTP:
  curl --cacert $TLS/ca.pem -H "Authorization: Bearer \$($CTL token --role=physician --sub=dr-demo --states=NJ)" https://localhost:$GATEWAY_PORT/v1/referrals
Press Ctrl-C to stop.
INFO

# Wait until a service exits on its own (then stop the rest) or Ctrl-C.
wait -n "${pids[@]}" || true
say "a process exited unexpectedly; see $LOGS"
exit 1
