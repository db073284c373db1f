"""deploy/ kept honest offline: every file parses, every version matches the one exact Beam
pin (pyproject.toml's `deploy` extra), every script passes ``bash -n`` and, run with
DRY_RUN=1, prints a command that our own parsers (and gcloud's, where gcloud is installed)
accept, and the files agree with each other (ports, service names, task slots, template
parameters).

What cannot be checked here (no Docker engine, no cluster, no Google Cloud): building the
image, and running the compose file, the manifests or the gcloud commands for real.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml
from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions)

from tests.conftest import REPO
from zipfit_beam.cli.options import (parse_select_args, parse_with_config, select_parser,
                                     template_parameters_to_flags, worker_pool_parser)

DEPLOY = os.path.join(REPO, "deploy")


def deploy_files(*patterns):
    return sorted(f for p in patterns for f in glob.glob(os.path.join(DEPLOY, "**", p), recursive=True))


def read(rel):
    with open(os.path.join(DEPLOY, rel)) as f:
        return f.read()


def yaml_docs(rel):
    return [d for d in yaml.safe_load_all(read(rel)) if d is not None]


def pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def pinned_beam_version() -> str:
    """The one exact Beam pin, in the `deploy` extra (what the images install); the default
    dependencies give a range, which must hold it."""
    from packaging.requirements import Requirement
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    every = [Requirement(r) for r in project["dependencies"] + [r for rs in extras.values() for r in rs]]
    pins = [str(r.specifier)[2:] for r in every
            if r.name == "apache-beam" and str(r.specifier).startswith("==")]
    assert len(pins) == 1, f"pyproject.toml must pin apache-beam exactly once: {pins}"
    assert any(Requirement(r).name == "apache-beam" and str(Requirement(r).specifier) == f"=={pins[0]}"
               for r in extras["deploy"]), "the exact pin belongs in the deploy extra"
    [default] = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "apache-beam"]
    assert not str(default.specifier).startswith("==") and pins[0] in default.specifier, default
    return pins[0]


def package_version() -> str:
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


METADATA = json.loads(read("dataflow/metadata.json"))
PARAMS = {p["name"]: p for p in METADATA["parameters"]}
FLAGS = {opt[2:]: action for action in select_parser()._actions
         for opt in action.option_strings if opt.startswith("--") and opt != "--help"}


# ---------------------------------------------------------------- everything parses

def test_every_manifest_parses():
    files = deploy_files("*.yaml", "*.yml", "*.json")
    assert len(files) >= 6, files
    for path in files:
        with open(path) as f:
            if path.endswith(".json"):
                assert json.load(f), path
                continue
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        assert docs, path
        for doc in docs:
            if "apiVersion" in doc:  # Kubernetes
                assert doc.get("kind") and doc.get("metadata", {}).get("name"), (path, doc)
            else:
                assert "services" in doc, path  # docker compose


@pytest.mark.parametrize("script", deploy_files("*.sh"), ids=os.path.basename)
def test_script_passes_bash_n(script):
    done = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(script) as f:
        text = f.read()
    assert text.startswith("#!/usr/bin/env bash\n"), script
    assert "set -euo pipefail" in text, script
    assert os.access(script, os.X_OK), f"{script} is not executable"


# ---------------------------------------------------------------- versions

def test_every_beam_image_and_pin_uses_the_deploy_pin():
    beam = pinned_beam_version()
    refs = []
    for path in deploy_files("*"):
        if os.path.isdir(path):
            continue
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"apache/beam_([a-z0-9._]+)(?::([^\s\"'@]+))?", text):
            refs.append(m.group(0))
            assert m.group(2) == beam, f"{os.path.relpath(path, REPO)}: {m.group(0)} is not pinned to {beam}"
        for m in re.finditer(r"apache[-_]beam(?:\[[^\]]*\])?==([0-9][^\s\"']*)", text):
            assert m.group(1) == beam, f"{os.path.relpath(path, REPO)}: {m.group(0)}"
    kinds = {re.sub(r":.*", "", r) for r in refs}
    assert {"apache/beam_python3.11_sdk", "apache/beam_flink1.19_job_server"} <= kinds, refs


def test_python_and_flink_versions_agree_everywhere():
    dockerfile = read("Dockerfile")
    sdk_py = re.findall(r"apache/beam_python(\d+)\.(\d+)_sdk", dockerfile)
    launcher_py = re.findall(r"python(\d)(\d+)-template-launcher-base", dockerfile)
    assert sdk_py and launcher_py and set(sdk_py) == set(launcher_py), (sdk_py, launcher_py)

    flink = set()
    for path in deploy_files("*.yaml", "*.yml", "*.sh"):
        with open(path) as f:
            text = f.read()
        flink |= set(re.findall(r"beam_flink(\d+\.\d+)_job_server", text))
        flink |= set(re.findall(r"image: flink:(\d+\.\d+)", text))
        flink |= {v.replace("_", ".") for v in re.findall(r"flinkVersion: v(\d+_\d+)", text)}
        flink |= set(re.findall(r"FLINK_VERSION:-(\d+\.\d+)", text))
        flink |= set(re.findall(r"^FLINK_VERSION=(\d+\.\d+)\.\d+$", text, re.M))  # local-cluster.sh
    flink |= set(re.findall(r"<beam.flink.runner>beam-runners-flink-(\d+\.\d+)<", read("flink/jobserver/pom.xml")))
    assert len(flink) == 1, f"Flink versions disagree: {flink}"
    assert flink <= set(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS), flink


def test_our_image_references_carry_the_package_version():
    version = package_version()
    for path in deploy_files("*.yaml", "*.yml"):
        with open(path) as f:
            for ref in re.findall(r"[\w.\-/]*zipfit-beam:[\w.\-]+", f.read()):
                assert ref.endswith(f"zipfit-beam:{version}"), (path, ref)


# ---------------------------------------------------------------- the Dockerfile

def test_dockerfile_installs_the_package_and_checks_the_kernel():
    text = read("Dockerfile")
    assert re.search(r"^FROM apache/beam_python3\.11_sdk:", text, re.M)
    # the deploy extra: the exact Beam pin, gs:// and Hugging Face targets
    assert "pip install --no-cache-dir '.[deploy]'" in text and "pip check" in text
    # the build fails when any C extension (each zipfit_beam/*/_*.c) did not compile
    check = re.search(r'python -c "(import zipfit_beam\.score\._[^"]*)"', text).group(1)
    sources = glob.glob(os.path.join(REPO, "zipfit_beam", "*", "_*.c"))
    assert len(sources) == 5
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        pyproject = f.read()
    for src in sources:
        module = os.path.relpath(src, REPO)[:-2].replace(os.sep, ".")
        assert f"{module}," in check, src
        assert f'name = "{module}"' in pyproject, src  # built by pip install
    entry = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/zipfit-beam/(\S+)", text).group(1)
    assert os.path.isfile(os.path.join(REPO, entry)), entry
    ignore = read("Dockerfile.dockerignore").split()
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        if src != "pyproject.toml" and not src.endswith(".md"):
            assert any(rule.startswith("!" + src.rstrip("/")) for rule in ignore), src
        assert os.path.exists(os.path.join(REPO, src)), src


# ---------------------------------------------------------------- Flex Template metadata

def test_metadata_parameters_are_a_subset_of_the_cli_flags():
    assert set(PARAMS) <= set(FLAGS), set(PARAMS) - set(FLAGS)
    required = {name for name, action in FLAGS.items() if action.required}
    assert required <= set(PARAMS), required - set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_metadata_parameter_matches_its_flag(name):
    p, action = PARAMS[name], FLAGS[name]
    assert p["label"].strip() and p["helpText"].strip()
    assert p["isOptional"] is (not action.required)
    regexes = [re.compile(r) for r in p["regexes"]]

    def ok(value):
        return all(r.search(value) for r in regexes)

    if action.nargs == 0:  # an on/off flag: the template passes true/false
        assert ok("true") and ok("false") and not ok("yes")
    if action.choices:
        assert all(ok(c) for c in action.choices) and not ok("bogus")
    if action.type is int:
        assert not ok("abc") and not ok("-1")
        if action.default is not None:
            assert ok(str(action.default))


def test_template_parameters_reach_the_parser():
    example = {"source": "gs://b/corpus/part-*.jsonl.gz", "target": "gs://b/t.jsonl",
               "output": "gs://b/out", "top-k": "100", "text-field": "content",
               "target-text-field": "prompt", "id-field": "doc_id", "compressor": "gzip",
               "level": "1", "num-shards": "4", "output-suffix": ".jsonl.gz",
               "scoring-threads": "2", "batch-size": "32", "overwrite": "true", "min-score": "0.1",
               "contamination-ngram": "10", "allow-contaminated": "false", "group-field": "lang",
               "cache": "gs://b/cache"}
    # top-k, token-budget and fraction exclude each other: the example uses top-k; config
    # names a file to read (tests/unit/test_deploy_config.py)
    assert set(example) | {"token-budget", "fraction", "config"} == set(PARAMS), \
        "update the example when metadata.json changes"
    for name, value in example.items():
        assert all(re.search(r, value) for r in PARAMS[name]["regexes"]), (name, value)
    config, _ = parse_select_args(template_parameters_to_flags(
        [f"--{k}={v}" for k, v in example.items()] + ["--runner=DataflowRunner"]))
    assert (config.top_k, config.text_field, config.target_text_field, config.overwrite,
            config.num_shards, config.output_suffix, config.contamination_ngram,
            config.allow_contaminated, config.group_field, config.cache) == (
        100, "content", "prompt", True, 4, ".jsonl.gz", 10, False, "lang", "gs://b/cache")


# ---------------------------------------------------------------- commands the scripts run

def dry_run(script, *args, **env):
    """Run a deploy script with DRY_RUN=1; returns its printed commands as argv lists."""
    full_env = dict(os.environ, DRY_RUN="1", **env)
    done = subprocess.run(["bash", os.path.join(DEPLOY, script), *args], capture_output=True,
                          text=True, env=full_env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, [shlex.split(line) for line in done.stdout.splitlines()
                         if line.split(" ", 1)[0] in ("docker", "gcloud", "zipfit-beam")]


@functools.lru_cache(maxsize=None)
def gcloud_flags(*command):
    """The flags gcloud documents for a command (None when gcloud is not installed)."""
    if not shutil.which("gcloud"):
        return None
    done = subprocess.run(["gcloud", *command, "--help"], capture_output=True, text=True,
                          env=dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1"), timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    return set(re.findall(r"--[a-z][a-z0-9-]+", text))


def assert_gcloud_knows(argv, n_words):
    known = gcloud_flags(*argv[1:n_words])
    if known is None:
        return
    used = {a.split("=", 1)[0] for a in argv[n_words:] if a.startswith("--")}
    assert used <= known, f"gcloud {' '.join(argv[1:n_words])} has no {used - known}"


def beam_flag_names():
    return set(PipelineOptions([]).get_all_options(drop_default=False))


def assert_select_command(argv):
    """argv = [...] select FLAGS: our flags parse, the rest are Beam options Beam knows."""
    flags = argv[argv.index("select") + 1:]
    config, options = parse_select_args(flags)
    _, beam_args = parse_with_config(select_parser, flags)  # with the flags of --config FILE
    unknown = {a[2:].split("=", 1)[0] for a in beam_args if a.startswith("--")} - beam_flag_names()
    assert not unknown, f"not Beam options: {unknown}"
    return config, options


def test_flink_submit_through_the_job_server():
    _, [argv] = dry_run("flink/submit.sh", "--source", "/data/c/*.jsonl", "--target", "/data/t.jsonl",
                        "--output", "/data/out", "--top-k", "7")
    config, options = assert_select_command(argv)
    portable = options.view_as(PortableOptions)
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert (portable.job_endpoint, portable.artifact_endpoint) == ("localhost:8099", "localhost:8098")
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:50000")
    assert config.top_k == 7 and config.scoring_threads == 1


def test_flink_submit_with_flink_master():
    _, [argv] = dry_run("flink/submit.sh", "--source", "/d/*.jsonl", "--target", "/d/t.jsonl",
                        "--output", "/d/out", "--top-k", "7", FLINK_MASTER="flink-jm:8081")
    _, options = assert_select_command(argv)
    flink = options.view_as(FlinkRunnerOptions)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert flink.flink_master == "flink-jm:8081" and flink.flink_submit_uber_jar
    assert flink.flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert options.view_as(PortableOptions).environment_type == "EXTERNAL"


def test_flex_template_build_script():
    _, commands = dry_run("dataflow/build-flex-template.sh", PROJECT="p",
                          TEMPLATE="gs://b/templates/zipfit-beam.json")
    build, push, template = commands
    assert build[:4] == ["docker", "build", "-f", os.path.join(DEPLOY, "Dockerfile")]
    assert build[-1] == REPO  # the build context is the repository root
    image = build[build.index("-t") + 1]
    assert image.endswith(f"/zipfit-beam:{package_version()}") and push == ["docker", "push", image]
    assert template[:4] == ["gcloud", "dataflow", "flex-template", "build"]
    assert f"--image={image}" in template and "--sdk-language=PYTHON" in template
    assert f"--metadata-file={os.path.join(DEPLOY, 'dataflow', 'metadata.json')}" in template
    assert_gcloud_knows(template, 4)


def parse_gcloud_dict(value):
    """gcloud's KEY=VALUE list, with the optional ^D^ alternative delimiter."""
    sep = ","
    if value.startswith("^"):
        sep, value = value[1:].split("^", 1)
    return dict(kv.split("=", 1) for kv in value.split(sep))


def test_flex_template_run_script_passes_valid_parameters():
    _, [argv] = dry_run("dataflow/run-flex-template.sh", "source=gs://b/c/part-{0,1}*.jsonl.gz",
                        "target=gs://b/t.jsonl", "output=gs://b/out", "top-k=1000", "overwrite=true",
                        PROJECT="p", TEMPLATE="gs://b/t.json", IMAGE="r/zipfit-beam:0.1.0")
    assert argv[:4] == ["gcloud", "dataflow", "flex-template", "run"]
    assert_gcloud_knows(argv, 4)
    params = parse_gcloud_dict(next(a for a in argv if a.startswith("--parameters="))
                               .split("=", 1)[1])
    assert params.pop("sdk_container_image") == "r/zipfit-beam:0.1.0"
    assert params["source"] == "gs://b/c/part-{0,1}*.jsonl.gz"  # a comma survives
    for name, value in params.items():
        assert all(re.search(r, value) for r in PARAMS[name]["regexes"]), (name, value)
    parse_select_args(template_parameters_to_flags([f"--{k}={v}" for k, v in params.items()]))


def test_flex_template_metadata_accepted_by_gcloud(tmp_path):
    if not shutil.which("gcloud"):
        pytest.skip("gcloud is not installed")
    done = subprocess.run(
        ["gcloud", "dataflow", "flex-template", "build", "gs://zipfit-ci/t.json",
         "--image=r/zipfit-beam:0.1.0", "--sdk-language=PYTHON",
         f"--metadata-file={os.path.join(DEPLOY, 'dataflow', 'metadata.json')}", "--print-only"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, CLOUDSDK_CONFIG=str(tmp_path), CLOUDSDK_CORE_DISABLE_PROMPTS="1"))
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout.split("\n", 1)[1])  # after gcloud's "|-" line
    assert [p["name"] for p in spec["metadata"]["parameters"]] == list(PARAMS)


# ---------------------------------------------------------------- Flink: compose and Kubernetes

def worker_pool_args(command):
    """['zipfit-beam', 'worker-pool', ...] -> parsed worker-pool flags."""
    assert command[:2] == ["zipfit-beam", "worker-pool"], command
    return worker_pool_parser().parse_args(command[2:])


def test_compose_wires_the_worker_pool_into_the_taskmanager():
    compose = yaml_docs("flink/docker-compose.yml")[0]
    services = compose["services"]
    assert {"jobmanager", "taskmanager", "job-server", "worker-pool"} <= set(services)
    pool = services["worker-pool"]
    assert pool["network_mode"] == "service:taskmanager"
    args = worker_pool_args(pool["entrypoint"] + pool["command"])
    assert (args.host, args.port, args.container_executable) == (
        "127.0.0.1", 50000, "/opt/apache/beam/boot")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    job_server = services["job-server"]
    artifacts_dir = next(a.split("=", 1)[1] for a in job_server["command"]
                         if a.startswith("--artifacts-dir="))
    mounts = {name: {v.split(":")[1]: v.split(":")[0] for v in services[name].get("volumes", [])}
              for name in ("job-server", "taskmanager", "worker-pool")}
    assert len({m.get(artifacts_dir) for m in mounts.values()} - {None}) == 1 and all(
        artifacts_dir in m for m in mounts.values()), mounts
    assert any(a == "--flink-master=jobmanager:8081" for a in job_server["command"])


def k8s(rel, kind, name=None):
    docs = [d for d in yaml_docs(rel) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(docs) == 1, (rel, kind, name)
    return docs[0]


def test_flink_deployment_has_a_loopback_worker_pool_sidecar():
    fd = k8s("flink/k8s/flink-deployment.yaml", "FlinkDeployment")
    containers = {c["name"]: c for c in fd["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]}
    assert "flink-main-container" in containers
    sidecar = containers["beam-worker-pool"]
    args = worker_pool_args(sidecar["command"] + sidecar["args"])
    assert (args.host, args.port, args.container_executable) == (
        "127.0.0.1", 50000, "/opt/apache/beam/boot")
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c].get("volumeMounts", [])}
              for c in ("flink-main-container", "beam-worker-pool")}
    assert mounts["flink-main-container"]["beam-artifacts"] == mounts["beam-worker-pool"]["beam-artifacts"]


def test_cronjob_submits_to_the_job_server_service_and_the_sidecar(tmp_path):
    cron = k8s("schedule/cronjob.yaml", "CronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}

    # Run the container's command with the repo's submit.sh as zipfit-flink-submit (the
    # Dockerfile installs it under that name), printing instead of submitting.
    assert "COPY deploy/flink/submit.sh /usr/local/bin/zipfit-flink-submit" in read("Dockerfile")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "zipfit-flink-submit").symlink_to(os.path.join(DEPLOY, "flink", "submit.sh"))
    done = subprocess.run(container["command"] + container["args"], capture_output=True, text=True,
                          env=dict(os.environ, **env, DRY_RUN="1",
                                   PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}"), timeout=60)
    assert done.returncode == 0, done.stderr
    # The ConfigMaps the pod mounts, written where the printed command can read them.
    argv = shlex.split(done.stdout)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        config_map = k8s("schedule/cronjob.yaml", "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
        local = tmp_path / mount["name"]
        local.mkdir()
        for name, text in config_map["data"].items():
            (local / name).write_text(text)
        argv = [a.replace(mount["mountPath"], str(local)) for a in argv]
    config, options = assert_select_command(argv)
    assert config.sources and config.targets and config.top_k
    assert re.fullmatch(re.escape(env["OUTPUT_ROOT"]) + r"/\d{4}-\d{2}-\d{2}", config.output)
    assert config.cache == env["CACHE"]  # a night that adds one shard scores only that shard

    # ... to the job server's Service, and to the sidecar's port.
    portable = options.view_as(PortableOptions)
    service = k8s("flink/k8s/job-server.yaml", "Service")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert portable.job_endpoint == f"{service['metadata']['name']}:{ports['job']}"
    assert portable.artifact_endpoint == f"{service['metadata']['name']}:{ports['artifact']}"
    fd = k8s("flink/k8s/flink-deployment.yaml", "FlinkDeployment")
    sidecar = next(c for c in fd["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
                   if c["name"] == "beam-worker-pool")
    assert portable.environment_config == f"localhost:{worker_pool_args(sidecar['command'] + sidecar['args']).port}"
    # One Python process per task slot; parallelism = all slots.
    slots = int(fd["spec"]["flinkConfiguration"]["taskmanager.numberOfTaskSlots"])
    assert int(portable.sdk_worker_parallelism) == slots
    assert options.view_as(FlinkRunnerOptions).parallelism == slots * fd["spec"]["taskManager"]["replicas"]

    # The job server's NetworkPolicy lets this pod in, and the job server reaches Flink.
    policy = k8s("flink/k8s/job-server.yaml", "NetworkPolicy")
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= pod["metadata"]["labels"].items()
    job_server = k8s("flink/k8s/job-server.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert f"--flink-master={fd['metadata']['name']}-rest:8081" in job_server["args"]


# ---------------------------------------------------------------- Cloud Scheduler -> Flex Template

SCHEDULER_ENV = dict(PROJECT="p", SERVICE_ACCOUNT="s@p.iam.gserviceaccount.com",
                     TEMPLATE="gs://b/templates/zipfit-beam.json", IMAGE="r/zipfit-beam:0.1.0",
                     SOURCE="gs://b/corpus/part-*.jsonl.gz", TARGET="gs://b/t.jsonl",
                     OUTPUT="gs://b/curated/latest", TOP_K="100000", TEMP_LOCATION="gs://b/tmp",
                     CACHE="gs://b/cache")

# FlexTemplateRuntimeEnvironment fields of the Dataflow v1b3 API that the body may set.
RUNTIME_ENVIRONMENT_FIELDS = {
    "numWorkers", "maxWorkers", "zone", "serviceAccountEmail", "tempLocation", "machineType",
    "additionalExperiments", "network", "subnetwork", "additionalUserLabels", "kmsKeyName",
    "ipConfiguration", "workerRegion", "workerZone", "enableStreamingEngine", "flexrsGoal",
    "stagingLocation", "sdkContainerImage", "diskSizeGb", "autoscalingAlgorithm",
    "dumpHeapOnOom", "saveHeapDumpsToGcsPath", "launcherMachineType"}


def test_cloud_scheduler_launches_the_template_with_valid_parameters():
    out, commands = dry_run("schedule/cloud-scheduler.sh", **SCHEDULER_ENV)
    body = json.loads(out[:out.index("\ngcloud ")])
    [argv] = commands
    assert argv[:5] == ["gcloud", "scheduler", "jobs", "create", "http"]
    assert_gcloud_knows(argv, 5)
    assert "--uri=https://dataflow.googleapis.com/v1b3/projects/p/locations/us-central1/flexTemplates:launch" in argv

    launch = body["launchParameter"]
    assert launch["containerSpecGcsPath"] == SCHEDULER_ENV["TEMPLATE"]
    assert launch["parameters"]["cache"] == SCHEDULER_ENV["CACHE"]
    assert set(launch["environment"]) <= RUNTIME_ENVIRONMENT_FIELDS
    assert launch["environment"]["sdkContainerImage"] == SCHEDULER_ENV["IMAGE"]
    params = launch["parameters"]
    required = {n for n, p in PARAMS.items() if not p["isOptional"]}
    assert required <= set(params) <= set(PARAMS)
    for name, value in params.items():
        assert all(re.search(r, value) for r in PARAMS[name]["regexes"]), (name, value)
    config, _ = parse_select_args(template_parameters_to_flags(
        [f"--{k}={v}" for k, v in params.items()] + ["--runner=DataflowRunner"]))
    assert config.overwrite  # the same output path every night


# ---------------------------------------------------------------- Flink: local-cluster.sh
# (run for real, cluster and all, by tests/runners/test_flink.py; these checks need no install)

LOCAL_CLUSTER = os.path.join(DEPLOY, "flink", "local-cluster.sh")


def test_local_cluster_binds_every_server_to_loopback():
    text = read("flink/local-cluster.sh")
    config = text[text.index("config.yaml\" <<EOF"):]
    config = config[:config.index("\nEOF\n")]
    hosts = dict(re.findall(r"^([\w.-]*(?:bind-host|address|\.host)): (\S+)$", config, re.M))
    assert set(hosts) >= {"jobmanager.bind-host", "jobmanager.rpc.address", "taskmanager.bind-host",
                          "taskmanager.host", "rest.address", "rest.bind-address"}, hosts
    assert set(hosts.values()) == {"127.0.0.1"}, hosts
    assert "--job-host=127.0.0.1" in text and "--flink-master=\"127.0.0.1:" in text
    assert "worker-pool --host 127.0.0.1" in text
    # Every JVM it starts preloads the library that turns wildcard binds into loopback.
    launches = re.findall(r"^\s*launch (\w+) (.*)$", text, re.M)
    assert {name for name, _ in launches} == {"jobmanager", "taskmanager", "jobserver", "workerpool"}
    for name, command in launches:
        if name != "workerpool":
            assert "LD_PRELOAD" in command or "flink_env" in command, (name, command)
    assert re.search(r'flink_env=\(env [^)]*LD_PRELOAD="\$BIND_LIB"', text)
    # The flags it prints point at loopback too.
    flags = re.search(r"flags\(\) \{\n(.*?)\n\}", text, re.S).group(1)
    assert "--job_endpoint=127.0.0.1:" in flags and "--environment_config=127.0.0.1:" in flags


def test_loopback_bind_library_turns_wildcard_binds_into_loopback(tmp_path):
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    lib = tmp_path / "loopback_bind.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(lib),
                    os.path.join(DEPLOY, "flink", "loopback_bind.c"), "-ldl"], check=True)
    probe = (
        "import socket\n"
        "for family, any_addr in ((socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')):\n"
        "    s = socket.socket(family)\n"
        "    s.bind((any_addr, 0)); s.listen()\n"
        "    print(s.getsockname()[0])\n"
        "s = socket.socket(); s.bind(('127.0.0.2', 0)); print(s.getsockname()[0])\n")
    done = subprocess.run(["python3", "-c", probe], env=dict(os.environ, LD_PRELOAD=str(lib)),
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["127.0.0.1", "::ffff:127.0.0.1", "127.0.0.2"], done.stderr
    plain = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, check=True)
    assert plain.stdout.split()[:2] == ["0.0.0.0", "::"]  # what the JVMs would bind without it


def test_local_cluster_down_and_status_without_a_cluster(tmp_path):
    env = dict(os.environ, ZIPFIT_FLINK_STATE=str(tmp_path / "state"),
               ZIPFIT_FLINK_CACHE=str(tmp_path / "cache"))
    status = subprocess.run(["bash", LOCAL_CLUSTER, "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.startswith(
        "jobmanager=down taskmanager=down jobserver=down workerpool=down"), status
    down = subprocess.run(["bash", LOCAL_CLUSTER, "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0 and "stopping" not in down.stderr, down
    assert not os.path.exists(tmp_path / "cache")  # nothing installed by down or status
    usage = subprocess.run(["bash", LOCAL_CLUSTER, "sideways"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_local_cluster_ignores_a_pid_file_whose_process_is_not_ours(tmp_path):
    """A PID file naming a running process that is not the one recorded (other start time:
    the PID was reused) must not make ``down`` signal it."""
    state = tmp_path / "state"
    state.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (state / "workerpool.pid").write_text(f"{sleeper.pid} 1\n")  # wrong start time
        env = dict(os.environ, ZIPFIT_FLINK_STATE=str(state), ZIPFIT_FLINK_CACHE=str(tmp_path / "c"))
        down = subprocess.run(["bash", LOCAL_CLUSTER, "down"], env=env, capture_output=True, text=True)
        assert down.returncode == 0, down
        assert sleeper.poll() is None, "down signalled a process it did not start"
        assert not (state / "workerpool.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_job_server_java_version_is_documented():
    """The Flink job server runs Beam's Java side at an older version than the Python pin
    (the newest our Maven mirror serves); README says which, and why."""
    pom = read("flink/jobserver/pom.xml")
    java = re.search(r"<beam.java.version>([\d.]+)<", pom).group(1)
    runner = re.search(r"<beam.flink.runner>([\w.-]+)<", pom).group(1)
    as_tuple = lambda v: tuple(map(int, v.split(".")))  # noqa: E731
    assert as_tuple(java) <= as_tuple(pinned_beam_version())
    readme = open(os.path.join(REPO, "README.md")).read()
    assert f"{runner}" in readme and f"Beam {java}" in readme
