#!/usr/bin/env bash
# Build the zipfit-beam image (deploy/Dockerfile), push it to Artifact Registry, and write
# the Dataflow Flex Template spec (image + deploy/dataflow/metadata.json) to Cloud Storage.
#
#   PROJECT=my-project TEMPLATE=gs://my-bucket/templates/zipfit-beam.json \
#       deploy/dataflow/build-flex-template.sh
#
# Environment:
#   PROJECT      Google Cloud project (required)
#   TEMPLATE     gs:// path of the template spec to write (required)
#   REGION       Artifact Registry region (default: us-central1)
#   REPOSITORY   Artifact Registry Docker repository (default: zipfit)
#   IMAGE        full image name (default: REGION-docker.pkg.dev/PROJECT/REPOSITORY/zipfit-beam:VERSION,
#                VERSION from pyproject.toml)
#   DRY_RUN=1    print the commands instead of running them
#
# Needs docker (with BuildKit, for deploy/Dockerfile.dockerignore) and gcloud, logged in
# with `gcloud auth configure-docker REGION-docker.pkg.dev` done once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${PROJECT:?set PROJECT to your Google Cloud project}"
: "${TEMPLATE:?set TEMPLATE to the gs:// path of the template spec, e.g. gs://BUCKET/templates/zipfit-beam.json}"
REGION="${REGION:-us-central1}"
REPOSITORY="${REPOSITORY:-zipfit}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")"
IMAGE="${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/zipfit-beam:$VERSION}"

run() {
    if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

run docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
run docker push "$IMAGE"
run gcloud dataflow flex-template build "$TEMPLATE" \
    --project="$PROJECT" \
    --image="$IMAGE" \
    --sdk-language=PYTHON \
    --metadata-file="$ROOT/deploy/dataflow/metadata.json"
echo "template: $TEMPLATE  image: $IMAGE" >&2
