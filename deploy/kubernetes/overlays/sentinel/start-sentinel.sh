#!/bin/sh
# Starts this pod's Sentinel, monitoring the master "aqueduct" (quorum 2
# of 3). It rewrites its own config as the topology changes, so the file
# lives in a writable emptyDir; a restarted pod asks the other Sentinels
# for the current primary before monitoring it.
set -eu
. /scripts/find-primary.sh
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
