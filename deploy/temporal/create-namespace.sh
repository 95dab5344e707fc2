#!/bin/sh
# Waits until the Temporal cluster is healthy, creates the namespace if it is
# missing, then waits until the namespace answers the call every worker makes
# first (listing search attributes), so workers never start against a namespace
# the frontend does not know yet. Uses the `temporal` CLI (tctl is past its end
# of support).
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${NAMESPACE_RETENTION:-72h}"
ATTEMPTS="${READY_ATTEMPTS:-60}"  # two seconds apart

retry() {
    what="$1"
    shift
    attempt=1
    until "$@" >/dev/null 2>&1; do
        if [ "$attempt" -ge "$ATTEMPTS" ]; then
            echo "gave up waiting for $what after $ATTEMPTS attempts" >&2
            "$@"  # once more, with its error shown
            exit 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
}

retry "cluster health" temporal operator cluster health --address "$ADDRESS"
echo "cluster: healthy"

if temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace: $NAMESPACE exists"
else
    temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
        --retention "$RETENTION"
    echo "namespace: $NAMESPACE created"
fi

retry "namespace $NAMESPACE" \
    temporal operator search-attribute list --address "$ADDRESS" --namespace "$NAMESPACE"
echo "namespace: $NAMESPACE ready"
