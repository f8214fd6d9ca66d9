#!/bin/sh
# Starts this pod's Sentinel, monitoring the master "aqueduct" (quorum 2
# of 3). It rewrites its own config as the topology changes, so the file
# lives in a writable emptyDir; a restarted pod asks the other Sentinels
# for the current primary before monitoring it.
set -eu
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
umask 077
mkdir -p /sentinel
{
  echo "port 26379"
  echo "dir /sentinel"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $SELF"
  echo "requirepass $(cat $SECRET/sentinel-client-password)"
  echo "sentinel sentinel-pass $(cat $SECRET/sentinel-client-password)"
  echo "sentinel monitor aqueduct $primary 6379 2"
  echo "sentinel auth-user aqueduct sentinel"
  echo "sentinel auth-pass aqueduct $(cat $SECRET/sentinel-password)"
  echo "sentinel down-after-milliseconds aqueduct 5000"
  echo "sentinel failover-timeout aqueduct 60000"
  echo "sentinel parallel-syncs aqueduct 1"
} >/sentinel/sentinel.conf
exec redis-server /sentinel/sentinel.conf --sentinel
