#!/usr/bin/env bash
# A real Flink session cluster on this machine, bound to 127.0.0.1, with Beam's Flink job
# server and our SDK worker pool in front of it: no Docker, only packages from PyPI and
# Maven Central.
#
#   deploy/flink/local-cluster.sh up       install what is missing (once), start, print the flags
#   deploy/flink/local-cluster.sh down     stop everything `up` started, by PID
#   deploy/flink/local-cluster.sh status   what runs; the flags again when all of it does
#
# `up` is idempotent: when everything already runs it starts nothing and prints the flags
# again; when only part of it runs (a process died) it stops the rest and starts afresh.
# The last line `up` prints is the Beam flags for `zipfit-beam select`, e.g.
#   --runner=PortableRunner --job_endpoint=127.0.0.1:8099 --environment_type=EXTERNAL
#   --environment_config=127.0.0.1:50000 --parallelism=2 --sdk_worker_parallelism=2
#   --environment_cache_millis=60000
#
# What runs (one process each, its PID in $STATE/*.pid, its output in $STATE/log/):
#   jobmanager   Flink JobManager (StandaloneSessionClusterEntrypoint), REST on FLINK_REST_PORT
#   taskmanager  one Flink TaskManager with FLINK_SLOTS task slots
#   jobserver    Beam's Flink job server (FlinkJobServerDriver): job API on BEAM_JOB_PORT,
#                artifact staging on BEAM_ARTIFACT_PORT; it submits to the cluster's REST API
#   workerpool   `zipfit-beam worker-pool --host 127.0.0.1`: the TaskManager asks it for
#                Python SDK workers (--environment_type=EXTERNAL)
#
# Versions, and why these: Beam's Flink job server is not served by the Maven repository
# our machines reach (no beam-runners-flink-*-job-server jar at any recent Beam version, no
# Flink 1.20 or 2.x runner library). The newest Flink runner that resolves with all its
# dependencies is beam-runners-flink-1.19 at Beam 2.62.0 (jobserver/pom.xml), which holds
# the job server's main class; so Flink is 1.19.3 (PyPI apache-flink and
# apache-flink-libraries: site-packages/pyflink is FLINK_HOME). The Python SDK stays at the
# pyproject.toml pin: the job server only translates the pipeline proto and drives the SDK
# workers over the Fn API.
#
# Loopback only. Flink binds where its config says (every bind-host below is 127.0.0.1).
# Beam's Java gRPC servers do not: the job server's job and artifact services, and the Fn
# API servers the runner opens inside the TaskManager for each job, bind the wildcard
# address whatever --job-host says. Every JVM started here preloads loopback_bind.so
# (loopback_bind.c, compiled once), which turns a bind to 0.0.0.0 or :: into loopback.
# tests/runners/test_flink.py checks every listening socket of these processes.
#
# SDK workers live for the whole job: Beam's runner reuses an SDK worker across a job's
# stages only when its own classes come from Flink's parent classloader, and
# --environment_cache_millis > 0 (otherwise a Python worker is started and stopped for
# every task: ~46 for one small select). So the job-server jar is also put on the cluster's
# classpath (HADOOP_CLASSPATH, which Flink's scripts append after flink-dist; nothing of
# Hadoop is involved) and classes are loaded parent-first (classloader.resolve-order).
#
# The job server sends its own classpath to the cluster with every job, so it runs from one
# shaded jar (jobserver/pom.xml) rather than 130: that halved the time to submit a job.
#
# Environment (defaults in brackets):
#   ZIPFIT_FLINK_CACHE   installs: Flink, the job-server jar, the bind library
#                        [$HOME/.cache/zipfit-beam/flink]
#   ZIPFIT_FLINK_STATE   config, PID files, logs, staged artifacts [$ZIPFIT_FLINK_CACHE/cluster]
#   ZIPFIT_BEAM          command that runs zipfit-beam, for the worker pool [zipfit-beam]
#   ZIPFIT_FLINK_PYTHON  Python whose pip installs Flink (3.8-3.11: apache-flink's wheels) [python3]
#   FLINK_REST_PORT [8081]  FLINK_RPC_PORT [6123]  BEAM_JOB_PORT [8099]
#   BEAM_ARTIFACT_PORT [8098]  WORKER_POOL_PORT [50000]  FLINK_SLOTS [2]
#   FLINK_TM_MEMORY [2560m]: TaskManager process size (512m of it network buffers)
#   STARTUP_TIMEOUT [180]: seconds to wait for each piece
set -euo pipefail

FLINK_VERSION=1.19.3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM=$HERE/jobserver/pom.xml
BEAM_JAVA_VERSION=$(sed -n 's:.*<beam.java.version>\(.*\)</beam.java.version>.*:\1:p' "$POM")

CACHE=${ZIPFIT_FLINK_CACHE:-$HOME/.cache/zipfit-beam/flink}
STATE=${ZIPFIT_FLINK_STATE:-$CACHE/cluster}
REST_PORT=${FLINK_REST_PORT:-8081}
RPC_PORT=${FLINK_RPC_PORT:-6123}
JOB_PORT=${BEAM_JOB_PORT:-8099}
ARTIFACT_PORT=${BEAM_ARTIFACT_PORT:-8098}
POOL_PORT=${WORKER_POOL_PORT:-50000}
SLOTS=${FLINK_SLOTS:-2}
TM_MEMORY=${FLINK_TM_MEMORY:-2560m}
TIMEOUT=${STARTUP_TIMEOUT:-180}
read -r -a ZIPFIT_CMD <<< "${ZIPFIT_BEAM:-zipfit-beam}"

FLINK_DIR=$CACHE/flink-$FLINK_VERSION        # pip --target; FLINK_HOME is its pyflink/
FLINK_HOME=$FLINK_DIR/pyflink
BEAM_LIB=$CACHE/beam-flink-job-server-$BEAM_JAVA_VERSION
BEAM_RUNNER=$(sed -n 's:.*<beam.flink.runner>\(.*\)</beam.flink.runner>.*:\1:p' "$POM")
JOB_SERVER_JAR=$BEAM_LIB/$BEAM_RUNNER-job-server-$BEAM_JAVA_VERSION.jar
BIND_LIB=$CACHE/loopback_bind-$(cksum < "$HERE/loopback_bind.c" | cut -d' ' -f1).so
SERVICES=(jobmanager taskmanager jobserver workerpool)   # start order; stopped in reverse

log() { echo "local-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

flags() {
    echo "--runner=PortableRunner --job_endpoint=127.0.0.1:$JOB_PORT" \
         "--environment_type=EXTERNAL --environment_config=127.0.0.1:$POOL_PORT" \
         "--parallelism=$SLOTS --sdk_worker_parallelism=$SLOTS --environment_cache_millis=60000"
}

# --- installs (each into its own directory, marked complete only when it succeeded) ---

install_flink() {
    [[ -f $FLINK_DIR/.complete ]] && return
    log "installing Flink $FLINK_VERSION from PyPI into $FLINK_DIR"
    rm -rf "$FLINK_DIR"
    "${ZIPFIT_FLINK_PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check \
        --no-deps --target "$FLINK_DIR" \
        "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION" >&2
    [[ -f $FLINK_HOME/lib/flink-dist-$FLINK_VERSION.jar ]] || die "no flink-dist jar in $FLINK_HOME/lib"
    chmod +x "$FLINK_HOME"/bin/*.sh "$FLINK_HOME/bin/flink"
    touch "$FLINK_DIR/.complete"
}

install_job_server() {
    [[ -f $BEAM_LIB/.complete && -f $JOB_SERVER_JAR ]] && return
    log "building Beam $BEAM_JAVA_VERSION's Flink job-server jar (Maven) in $BEAM_LIB"
    rm -rf "$BEAM_LIB"
    mvn --quiet --batch-mode -Dstyle.color=never -f "$POM" package \
        -Djobserver.build.dir="$BEAM_LIB" >&2
    [[ -f $JOB_SERVER_JAR ]] || die "no $JOB_SERVER_JAR"
    touch "$BEAM_LIB/.complete"
}

install_bind_lib() {
    [[ -f $BIND_LIB ]] && return
    mkdir -p "$CACHE"
    cc -shared -fPIC -O2 -Wall -o "$BIND_LIB.tmp" "$HERE/loopback_bind.c" -ldl
    mv "$BIND_LIB.tmp" "$BIND_LIB"
}

# --- processes ---

# A PID file holds "PID STARTTIME" (field 22 of /proc/PID/stat), so that a PID the kernel
# has since given to another process is never taken for ours.
start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

pid_of() {  # prints the PID if that service runs, else nothing
    local f=$STATE/$1.pid pid start
    [[ -f $f ]] || return 0
    read -r pid start < "$f" || return 0
    [[ -n $pid && "$(start_time "$pid")" == "$start" ]] && echo "$pid"
    return 0
}

# launch NAME CMD...: in its own session (so that it and its children are one process
# group), output to $STATE/log/NAME.out, PID file written at once.
launch() {
    local name=$1; shift
    setsid "$@" > "$STATE/log/$name.out" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid $(start_time "$pid")" > "$STATE/$name.pid"
}

wait_for() {  # wait_for NAME DESCRIPTION COMMAND...: until COMMAND succeeds
    local name=$1 what=$2; shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        if [[ -z "$(pid_of "$name")" ]]; then
            tail -n 40 "$STATE/log/$name.out" >&2 || true
            die "$name exited before $what"
        fi
        ((SECONDS < deadline)) || die "$name: no $what after ${TIMEOUT}s (see $STATE/log/)"
        sleep 0.5
    done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
slots_registered() {
    curl -sf "http://127.0.0.1:$REST_PORT/overview" 2>/dev/null | grep -q "\"slots-total\":$SLOTS[,}]"
}
log_has() { grep -q "$2" "$STATE/log/$1.out" 2>/dev/null; }

stop_one() {
    local name=$1 pid
    pid=$(pid_of "$name")
    if [[ -n $pid ]]; then
        log "stopping $name (PID $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do [[ -z "$(pid_of "$name")" ]] && break; sleep 0.2; done
        if [[ -n "$(pid_of "$name")" ]]; then
            log "$name did not stop on SIGTERM in 20 s: SIGKILL to its process group"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        # Anything it started in its process group (the pool's SDK workers) goes with it.
        for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
}

write_config() {
    mkdir -p "$STATE/conf" "$STATE/flink" "$STATE/log" "$STATE/tmp" "$STATE/artifacts"
    cp "$FLINK_HOME"/conf/log4j*.properties "$STATE/conf/"
    # The JVM options Flink ships for Java 17 (--add-opens ...), plus IPv4 sockets.
    local java_opts
    java_opts=$(sed -n 's/^ *all: *//p' "$FLINK_HOME/conf/config.yaml" | head -n 1)
    cat > "$STATE/conf/config.yaml" <<EOF
# Written by deploy/flink/local-cluster.sh; rewritten at every start.
env.java.opts.all: $java_opts -Djava.net.preferIPv4Stack=true
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $RPC_PORT
jobmanager.memory.process.size: 1024m
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.numberOfTaskSlots: $SLOTS
taskmanager.memory.process.size: $TM_MEMORY
# A Beam batch job is many operators at once: the default 10% of memory for network
# buffers is too little ("Insufficient number of network buffers").
taskmanager.memory.network.min: 512m
taskmanager.memory.network.max: 512m
parallelism.default: $SLOTS
# Generous RPC and heartbeat timeouts: on a busy 2-core machine the defaults (10 s, 50 s)
# failed a job with "AskTimeoutException: Ask timed out on ... taskmanager".
pekko.ask.timeout: 60 s
heartbeat.timeout: 180000
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $REST_PORT
io.tmp.dirs: $STATE/tmp
# Beam's runner classes, and the libraries they use (joda-time, ...), from the cluster's
# classpath, not from the jar the job server submits (see the script's header).
classloader.resolve-order: parent-first
EOF
}

status_line() {
    local name pid out=()
    for name in "${SERVICES[@]}"; do
        pid=$(pid_of "$name")
        out+=("$name=${pid:-down}")
    done
    echo "${out[*]}"
}

running_count() {
    local n=0 name
    for name in "${SERVICES[@]}"; do [[ -n "$(pid_of "$name")" ]] && n=$((n + 1)); done
    echo "$n"
}

up() {
    mkdir -p "$STATE"
    local n
    n=$(running_count)
    if ((n == ${#SERVICES[@]})); then
        log "already up ($(status_line)); state in $STATE"
        cat "$STATE/flags"
        return
    fi
    ((n == 0)) || { log "partly up ($(status_line)): stopping the rest first"; down; }

    install_flink
    install_job_server
    install_bind_lib
    local port
    for port in "$REST_PORT" "$RPC_PORT" "$JOB_PORT" "$ARTIFACT_PORT" "$POOL_PORT"; do
        port_free "$port" || die "port $port on 127.0.0.1 is taken (set the *_PORT variables)"
    done
    write_config

    # From here on, a failed start stops whatever it had started.
    trap 'if (($? != 0)); then log "start failed: stopping what was started"; down; fi' EXIT
    local t0=$SECONDS
    local flink_env=(env FLINK_CONF_DIR="$STATE/conf" FLINK_LOG_DIR="$STATE/log"
                     FLINK_PID_DIR="$STATE/flink" HADOOP_CLASSPATH="$JOB_SERVER_JAR"
                     LD_PRELOAD="$BIND_LIB")
    log "starting Flink $FLINK_VERSION: JobManager and a TaskManager with $SLOTS slots"
    launch jobmanager "${flink_env[@]}" "$FLINK_HOME/bin/jobmanager.sh" start-foreground
    launch taskmanager "${flink_env[@]}" "$FLINK_HOME/bin/taskmanager.sh" start-foreground
    wait_for jobmanager "REST API on 127.0.0.1:$REST_PORT" \
        curl -sf -o /dev/null "http://127.0.0.1:$REST_PORT/overview"
    wait_for taskmanager "$SLOTS registered slots" slots_registered

    log "starting Beam $BEAM_JAVA_VERSION's Flink job server"
    launch jobserver env LD_PRELOAD="$BIND_LIB" java -Xmx512m -Djava.net.preferIPv4Stack=true \
        -jar "$JOB_SERVER_JAR" \
        --flink-master="127.0.0.1:$REST_PORT" --flink-conf-dir="$STATE/conf" \
        --job-host=127.0.0.1 --job-port="$JOB_PORT" --artifact-port="$ARTIFACT_PORT" \
        --expansion-port=-1 --artifacts-dir="$STATE/artifacts"
    log "starting the SDK worker pool: ${ZIPFIT_CMD[*]} worker-pool"
    launch workerpool "${ZIPFIT_CMD[@]}" worker-pool --host 127.0.0.1 --port "$POOL_PORT"
    wait_for jobserver "job service" log_has jobserver "JobService started on"
    wait_for workerpool "listening socket" log_has workerpool "worker pool listening on 127.0.0.1:$POOL_PORT"

    flags > "$STATE/flags"
    trap - EXIT
    log "up in $((SECONDS - t0)) s: Flink REST http://127.0.0.1:$REST_PORT, logs in $STATE/log"
    cat "$STATE/flags"
}

down() {
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_one "${SERVICES[i]}"; done
    rm -f "$STATE/flags"
}

case "${1:-}" in
    up) up ;;
    down) down; log "down" ;;
    status)
        echo "$(status_line) (state in $STATE)"
        if (($(running_count) == ${#SERVICES[@]})); then cat "$STATE/flags"; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
