#!/usr/bin/env bash
# Scheduled curation on Google Cloud: a Cloud Scheduler job that launches the zipfit-beam
# Flex Template (deploy/dataflow/build-flex-template.sh) every night, by POSTing
# flex-template-launch.json to Dataflow's flexTemplates:launch API.
#
#   PROJECT=my-project SERVICE_ACCOUNT=zipfit-scheduler@my-project.iam.gserviceaccount.com \
#   TEMPLATE=gs://my-bucket/templates/zipfit-beam.json \
#   IMAGE=us-central1-docker.pkg.dev/my-project/zipfit/zipfit-beam:0.1.0 \
#   SOURCE='gs://my-bucket/corpus/part-*.jsonl.gz' TARGET=gs://my-bucket/targets/humaneval.jsonl \
#   OUTPUT=gs://my-bucket/curated/latest TOP_K=100000 TEMP_LOCATION=gs://my-bucket/tmp \
#   CACHE=gs://my-bucket/zipfit-cache \
#       deploy/schedule/cloud-scheduler.sh
#
# Every run keeps each source file's key table (its scores) in CACHE, so a night on which
# one shard was added scores only that shard (see the README's "Scheduled curation").
# Every launch sends the same body: the same output directory (overwrite=true replaces
# the previous run's files; manifest.json is written last) and the same job name, so a
# launch while the previous job still runs is refused by Dataflow instead of doubling it.
# SERVICE_ACCOUNT needs roles/dataflow.developer and to act as the workers' service
# account (roles/iam.serviceAccountUser).
#
# Environment: the variables above (all required), REGION (default us-central1),
# SCHEDULE (cron, default "0 3 * * *"), TIME_ZONE (default Etc/UTC),
# JOB (scheduler job name, default zipfit-beam-nightly), DRY_RUN=1 (print, don't run).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for v in PROJECT SERVICE_ACCOUNT TEMPLATE IMAGE SOURCE TARGET OUTPUT TOP_K TEMP_LOCATION CACHE; do
    [[ -n "${!v:-}" ]] || { echo "set $v (see the header of $0)" >&2; exit 2; }
done
REGION="${REGION:-us-central1}"
SCHEDULE="${SCHEDULE:-0 3 * * *}"
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"
JOB="${JOB:-zipfit-beam-nightly}"
export TEMPLATE IMAGE SOURCE TARGET OUTPUT TOP_K TEMP_LOCATION CACHE

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
# ${NAME} placeholders -> values (python's string.Template: a missing one is an error).
python3 -c 'import os, string, sys
sys.stdout.write(string.Template(open(sys.argv[1]).read()).substitute(os.environ))' \
    "$HERE/flex-template-launch.json" > "$body"

run() {
    if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

[[ -n "${DRY_RUN:-}" ]] && cat "$body"
run gcloud scheduler jobs create http "$JOB" \
    --project="$PROJECT" \
    --location="$REGION" \
    --schedule="$SCHEDULE" \
    --time-zone="$TIME_ZONE" \
    --uri="https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch" \
    --http-method=POST \
    --headers=Content-Type=application/json \
    --message-body-from-file="$body" \
    --oauth-service-account-email="$SERVICE_ACCOUNT" \
    --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
