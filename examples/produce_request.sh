#!/bin/sh
# Submits a one-row request straight to Kafka with kcat; prints its request id.
#   examples/produce_request.sh BOOTSTRAP PRODUCT URL
# Set KCAT="imgpipe kcat" for the embedded broker of `make run`.
set -eu
bootstrap=$1 product=$2 url=$3
kcat=${KCAT:-kcat}
new_id() { cat /proc/sys/kernel/random/uuid; }
request_id=$(new_id)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
envelope="\"event_id\":\"$(new_id)\",\"schema_version\":1,\"request_id\":\"$request_id\",\"occurred_at\":\"$now\""
echo "$request_id|{$envelope,\"event_type\":\"request.accepted\",\"rows_total\":1,\"images_total\":1,\"webhook_url\":null}" |
  $kcat -P -b "$bootstrap" -t imgpipe.requests.accepted -K '|'
envelope="\"event_id\":\"$(new_id)\",\"schema_version\":1,\"request_id\":\"$request_id\",\"occurred_at\":\"$now\""
echo "$request_id:0|{$envelope,\"event_type\":\"row.submitted\",\"row_index\":0,\"serial\":1,\"product_name\":\"$product\",\"image_urls\":[\"$url\"],\"quality\":50,\"output_format\":\"jpeg\"}" |
  $kcat -P -b "$bootstrap" -t imgpipe.rows.submitted -K '|'
echo "$request_id"
