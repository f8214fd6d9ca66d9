#!/usr/bin/env bash
# Makes every secret the Aqueduct services need, as the files Kubernetes
# mounts (one directory per Secret, one file per key), for
# deploy/kubernetes (its secretGenerator reads them from
# deploy/kubernetes/secrets/, which git ignores) and for the image test.
#
#   deploy/make-secrets.sh OUT_DIR [--idp-public-key FILE]
#
# OUT_DIR/
#   token-keys/      idp.pem + idp.roles (your identity provider's public
#                    key and the roles it may sign), intake.pem + intake.roles
#                    (intake's own service-token key), gateway.pem +
#                    gateway.roles (the HTTP gateway's): public keys only
#   tls-intake/, tls-scoring/, tls-referral/, tls-gateway/
#                    tls.crt, tls.key, ca.crt: a certificate per service
#                    (CN and SANs: the service's name and Service DNS names)
#                    from a private CA
#   data-keys/       data-keys: the keys that seal PHI in Redis and the
#                    pseudonym key
#   intake-signing/  intake-signing.pem: intake's private signing key
#   gateway-signing/ gateway-signing.pem: the gateway's (its one queue
#                    stream, service identity gateway)
#   redis-server/    users.acl (one ACL user per service, the default user
#                    off), replication-password and sentinel-password (what
#                    replicas and Sentinels sign in to data nodes with),
#                    sentinel-client-password (what Sentinels ask of
#                    clients)
#   redis-intake/, redis-referral/
#                    password: the service's own Redis user's password;
#                    sentinel-password: the Sentinels' client password
#   ca-key.pem       the CA's private key (keep it offline; not in a Secret)
#   idp-signing.pem  only without --idp-public-key: a development identity
#                    provider's private key, to mint test tokens
#                    (aqueductctl token). Never use it in production.
#
# Existing files are kept (run it again after deleting one to replace it).
# Needs openssl. Private files are made 0600.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--idp-public-key FILE]" >&2; exit 2; }
(($# >= 1)) || usage
OUT=$1
shift
IDP_PUB=""
while (($# > 0)); do
  case "$1" in
    --idp-public-key) (($# >= 2)) || usage; IDP_PUB=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -z "$IDP_PUB" || -s "$IDP_PUB" ]] || { echo "$0: --idp-public-key $IDP_PUB: no such file" >&2; exit 1; }

umask 077
mkdir -p "$OUT"/{token-keys,data-keys,intake-signing,gateway-signing,redis-server,redis-intake,redis-referral}
say() { printf '[make-secrets] %s\n' "$*"; }
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Token keys: the identity provider's public key and intake's.
if [[ -n "$IDP_PUB" ]]; then
  cp "$IDP_PUB" "$OUT/token-keys/idp.pem"
elif [[ ! -s "$OUT/token-keys/idp.pem" ]]; then
  ec_key "$OUT/idp-signing.pem"
  openssl pkey -in "$OUT/idp-signing.pem" -pubout -out "$OUT/token-keys/idp.pem" 2>/dev/null
  say "made a DEVELOPMENT identity provider key ($OUT/idp-signing.pem); pass --idp-public-key for production"
fi
echo "patient clinician physician batch operator" >"$OUT/token-keys/idp.roles"
if [[ ! -s "$OUT/intake-signing/intake-signing.pem" ]]; then
  ec_key "$OUT/intake-signing/intake-signing.pem"
fi
openssl pkey -in "$OUT/intake-signing/intake-signing.pem" -pubout -out "$OUT/token-keys/intake.pem" 2>/dev/null
echo "service:intake" >"$OUT/token-keys/intake.roles"
if [[ ! -s "$OUT/gateway-signing/gateway-signing.pem" ]]; then
  ec_key "$OUT/gateway-signing/gateway-signing.pem"
fi
openssl pkey -in "$OUT/gateway-signing/gateway-signing.pem" -pubout -out "$OUT/token-keys/gateway.pem" 2>/dev/null
echo "service:gateway" >"$OUT/token-keys/gateway.roles"

# Data keys: the first line seals, later ones only open (rotation).
if [[ ! -s "$OUT/data-keys/data-keys" ]]; then
  printf '# data keys: the first seals, the rest open (rotation)\nk1 %s\npseudonym %s\n' \
    "$(openssl rand -base64 32)" "$(openssl rand -base64 32)" >"$OUT/data-keys/data-keys"
fi

# TLS: a private CA and one certificate per service. Intake's is also its
# client certificate towards scoring and referral (mutual TLS).
if [[ ! -s "$OUT/ca.crt" ]]; then
  ec_key "$OUT/ca-key.pem"
  openssl req -x509 -new -key "$OUT/ca-key.pem" -subj "/CN=Aqueduct CA" -days 825 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$OUT/ca.crt" 2>/dev/null
fi
for svc in intake scoring referral gateway; do
  dir=$OUT/tls-$svc
  mkdir -p "$dir"
  cp "$OUT/ca.crt" "$dir/ca.crt"
  [[ -s "$dir/tls.crt" ]] && continue
  ec_key "$dir/tls.key"
  openssl req -new -key "$dir/tls.key" -subj "/CN=$svc" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.aqueduct,DNS:%s.aqueduct.svc,DNS:%s.aqueduct.svc.cluster.local,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' \
    "$svc" "$svc" "$svc" "$svc" >"$dir/tls.ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca-key.pem" -CAcreateserial \
    -days 397 -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
  rm -f "$dir/tls.csr" "$dir/tls.ext"
done
rm -f "$OUT/ca.srl"

# Redis: one ACL user per service, each limited to its own keys
# (aq:intake:*, aq:referral:*) and without admin commands (ROLE and INFO
# stay: the Sentinel client checks which node is primary); replicas and
# Sentinels have their own users; the default user is off.
for who in replication sentinel sentinel-client; do
  [[ -s "$OUT/redis-server/$who-password" ]] || openssl rand -hex 24 >"$OUT/redis-server/$who-password"
done
for svc in intake referral; do
  [[ -s "$OUT/redis-$svc/password" ]] || openssl rand -hex 24 >"$OUT/redis-$svc/password"
  cp "$OUT/redis-server/sentinel-client-password" "$OUT/redis-$svc/sentinel-password"
done
pw() {
  case "$1" in
    intake | referral) cat "$OUT/redis-$1/password" ;;
    *) cat "$OUT/redis-server/$1-password" ;;
  esac
}
cat >"$OUT/redis-server/users.acl" <<ACL
user default off
user intake on >$(pw intake) ~aq:intake:* resetchannels -@all +@read +@write +@keyspace +@hash +@sortedset +@set +@string +@list +@stream +@scripting +@transaction +@connection +role +info -keys -flushdb -flushall
user referral on >$(pw referral) ~aq:referral:* resetchannels -@all +@read +@write +@keyspace +@hash +@sortedset +@set +@string +@list +@stream +@scripting +@transaction +@connection +role +info -keys -flushdb -flushall
user replication on >$(pw replication) +psync +replconf +ping
user sentinel on >$(pw sentinel) allchannels +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill
ACL
say "secrets in $OUT (one directory per Kubernetes Secret)"
