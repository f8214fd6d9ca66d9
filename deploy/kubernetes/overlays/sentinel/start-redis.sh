#!/bin/sh
# Starts this pod's Redis node: as a replica of the primary the Sentinels
# name, or, when no Sentinel knows one yet (first start), as the primary
# if this is redis-0 and as its replica otherwise. Secrets go into a
# config file (mode 0600), never on the command line.
set -eu
. /scripts/find-primary.sh
umask 077
mkdir -p /conf
{
  echo "bind 0.0.0.0"
  echo "port 6379"
  echo "dir /data"
  echo "aclfile $SECRET/users.acl"
  echo "appendonly yes"
  echo "appendfsync always"
  echo 'save ""'
  echo "hash-max-listpack-value 2048"
  echo "replica-announce-ip $SELF"
  echo "masteruser replication"
  echo "masterauth $(cat $SECRET/replication-password)"
  if [ "$primary" != "$SELF" ]; then echo "replicaof $primary 6379"; fi
} >/conf/redis.conf
exec redis-server /conf/redis.conf
