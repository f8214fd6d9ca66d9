# Sourced by start-redis.sh and start-sentinel.sh: sets SECRET, DOMAIN,
# SELF (this pod's DNS name) and primary, the node the Sentinels name as
# the master "aqueduct", or redis-0 when none answers (first start).
SECRET=/etc/redis/secret
DOMAIN=redis-headless.${POD_NAMESPACE}.svc.cluster.local
SELF=${HOSTNAME:-$(hostname)}.$DOMAIN
primary=""
for i in 0 1 2; do
  primary=$(REDISCLI_AUTH="$(cat $SECRET/sentinel-client-password)" timeout 3 \
    redis-cli -h "redis-$i.$DOMAIN" -p 26379 --raw SENTINEL get-master-addr-by-name aqueduct 2>/dev/null | head -1) || primary=""
  [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary=redis-0.$DOMAIN
