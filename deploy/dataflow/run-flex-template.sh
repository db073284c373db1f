#!/usr/bin/env bash
# Launch a zipfit-beam selection on Dataflow from the Flex Template.
#
#   PROJECT=my-project TEMPLATE=gs://my-bucket/templates/zipfit-beam.json \
#   IMAGE=us-central1-docker.pkg.dev/my-project/zipfit/zipfit-beam:0.1.0 \
#       deploy/dataflow/run-flex-template.sh \
#           source='gs://my-bucket/corpus/part-*.jsonl.gz' \
#           target=gs://my-bucket/targets/humaneval.jsonl \
#           output=gs://my-bucket/curated/run-1 top-k=10000
#
# Arguments: template parameters as name=value (names and formats: metadata.json, the same
# as `zipfit-beam select` flags without the dashes; overwrite=true|false).
#
# Environment:
#   PROJECT, TEMPLATE, IMAGE  required; IMAGE is the image the template was built with,
#                             used for the workers too (so nothing is staged or pip-installed)
#   REGION         Dataflow region (default: us-central1)
#   TEMP_LOCATION  gs:// temp directory (default: Dataflow's staging bucket)
#   NUM_WORKERS    initial workers (default: 2)
#   MAX_WORKERS    autoscaling cap (default: 20)
#   MACHINE_TYPE   worker machine type (default: n2-highcpu-8: scoring is CPU-bound and
#                  needs little memory; one SDK process per vCPU)
#   JOB_NAME       (default: zipfit-beam-UTC timestamp)
#   DRY_RUN=1      print the command instead of running it
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${TEMPLATE:?set TEMPLATE to the template spec written by build-flex-template.sh}"
: "${IMAGE:?set IMAGE to the image the template was built with}"
REGION="${REGION:-us-central1}"
NUM_WORKERS="${NUM_WORKERS:-2}"
MAX_WORKERS="${MAX_WORKERS:-20}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-highcpu-8}"
JOB_NAME="${JOB_NAME:-zipfit-beam-$(date -u +%Y%m%d-%H%M%S)}"
if [[ $# -eq 0 ]]; then
    echo "usage: $0 source=GLOB target=GLOB output=DIR top-k=N [name=value ...]" >&2
    exit 2
fi

run() {
    if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# "^~^" makes "~" gcloud's separator between parameters: globs may contain commas.
params="^~^sdk_container_image=$IMAGE"
for kv in "$@"; do
    [[ "$kv" == *=* ]] || { echo "not name=value: $kv" >&2; exit 2; }
    params+="~$kv"
done

extra=()
[[ -n "${TEMP_LOCATION:-}" ]] && extra+=("--temp-location=$TEMP_LOCATION")

run gcloud dataflow flex-template run "$JOB_NAME" \
    --project="$PROJECT" \
    --region="$REGION" \
    --template-file-gcs-location="$TEMPLATE" \
    --num-workers="$NUM_WORKERS" \
    --max-workers="$MAX_WORKERS" \
    --worker-machine-type="$MACHINE_TYPE" \
    "${extra[@]}" \
    --parameters="$params"
