#!/usr/bin/env bash
# Submit a zipfit-beam selection to Flink. Our steps run in Python SDK workers started by a
# worker pool next to each TaskManager (--environment_type=EXTERNAL): the sidecar of
# docker-compose.yml and k8s/flink-deployment.yaml.
#
#   deploy/flink/submit.sh --source 'PATTERN' --target PATTERN --output DIR --top-k N \
#       [any other zipfit-beam select flag or Beam flag]
#
# Two ways in, chosen by the environment:
#   FLINK_MASTER=host:8081   Beam's FlinkRunner: --flink_master, and the job (with the files
#                            it stages) sent to Flink's REST API as one jar
#                            (--flink_submit_uber_jar). Needs Java and, once, the job-server
#                            jar from Maven Central (cached in ~/.apache_beam/cache/jars).
#   otherwise                a running Beam Flink job server (docker-compose.yml and
#                            k8s/job-server.yaml start one): PortableRunner at
#                            JOB_ENDPOINT (default localhost:8099), files staged through
#                            ARTIFACT_ENDPOINT (default localhost:8098).
#
# Other environment:
#   WORKER_POOL             the worker pool as the TaskManager reaches it (default
#                           localhost:50000: the sidecar shares the TaskManager's network)
#   SDK_WORKER_PARALLELISM  Python worker processes per TaskManager (default 4: one per task
#                           slot; each process scores with one thread)
#   PARALLELISM             Flink parallelism (default 4: total task slots)
#   ENVIRONMENT_CACHE_MILLIS  how long a job's SDK workers outlive a task (default 60000:
#                           kept across the job's stages where Beam's runner classes are on
#                           the cluster's classpath, see docker-compose.yml)
#   FLINK_VERSION           Flink minor version of the cluster (default 1.19)
#   ZIPFIT_BEAM             command that runs zipfit-beam (default: zipfit-beam)
#   DRY_RUN=1               print the command instead of running it
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 --source PATTERN --target PATTERN --output DIR --top-k N [flags ...]" >&2
    exit 2
fi
read -r -a zipfit <<< "${ZIPFIT_BEAM:-zipfit-beam}"

if [[ -n "${FLINK_MASTER:-}" ]]; then
    runner=(--runner=FlinkRunner
            --flink_master="$FLINK_MASTER"
            --flink_version="${FLINK_VERSION:-1.19}"
            --flink_submit_uber_jar)
else
    runner=(--runner=PortableRunner
            --job_endpoint="${JOB_ENDPOINT:-localhost:8099}"
            --artifact_endpoint="${ARTIFACT_ENDPOINT:-localhost:8098}")
fi

cmd=("${zipfit[@]}" select "$@" "${runner[@]}"
     --environment_type=EXTERNAL
     --environment_config="${WORKER_POOL:-localhost:50000}"
     --sdk_worker_parallelism="${SDK_WORKER_PARALLELISM:-4}"
     --environment_cache_millis="${ENVIRONMENT_CACHE_MILLIS:-60000}"
     --parallelism="${PARALLELISM:-4}")

if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "${cmd[@]}"; echo; else exec "${cmd[@]}"; fi
