# Checks of the deployment files against the code, without a container engine:
#   Dockerfile         parsed by a small parser below (stages, instructions,
#                      flags, exec/shell form); its ports, user, entrypoint,
#                      command, env and HEALTHCHECK are held against the config
#                      defaults, pyproject.toml, the CLI and the real HTTP server
#                      (the HEALTHCHECK command itself is run against it)
#   .dockerignore      what the Dockerfile copies is in the context, caches are not
#   kubernetes/*.yaml  env loaded through config.load_config, probes, ports,
#   docker-compose.yml annotations, shutdown timing, secrets wiring
#   grafana, alerts    every metric name, label and label value they use is
#                      exported by the collector
# The YAML checks need PyYAML (skipped, with that reason, where it is missing).
from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from mysqlpool_proxy import __version__, cli
from mysqlpool_proxy.config import (
    DEFAULT_CONFIG_PATH,
    AdminConfig,
    MetricsConfig,
    ProxyConfig,
    load_config,
    parse_listen,
)
from mysqlpool_proxy.ops import http
from mysqlpool_proxy.ops.metrics import build_registry
from mysqlpool_proxy.proxy.proxy import Proxy
from tests.support.promql import (
    ALERTS,
    DASHBOARD,
    SELECTOR,
    Exported,
    alert_exprs,
    check_expr,
    dashboard_exprs,
    exported_names,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
K8S = DEPLOY / "kubernetes" / "deployment.yaml"
COMPOSE = DEPLOY / "docker-compose.yml"

PROXY_PORT = parse_listen(ProxyConfig().listen).port
ADMIN_PORT = parse_listen(AdminConfig().listen).port
METRICS_PORT = parse_listen(MetricsConfig().listen).port
METRICS_PATH = MetricsConfig().path
SERVED_PATHS = {METRICS_PATH, http.HEALTH_PATH, http.READY_PATH}
A_USER = {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw"}


# ==========================================================================
# A small Dockerfile parser
# ==========================================================================

@dataclass
class Instruction:
    keyword: str  # upper case
    flags: dict[str, str]  # --name=value options before the arguments
    args: list[str] | str  # exec form (JSON array) or the shell-form text
    line: int

    @property
    def exec_form(self) -> bool:
        return isinstance(self.args, list)

    def words(self) -> list[str]:
        return self.args if self.exec_form else shlex.split(self.args)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in stage {self.name or self.image}"
        return found[-1]

    def text(self) -> str:
        return "\n".join(i.args if isinstance(i.args, str) else " ".join(i.args) for i in self.instructions)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text): comments dropped, backslash continuations joined."""
    out, current, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        out.append((start, current + stripped))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def parse_instruction(number: int, text: str) -> Instruction:
    keyword, _, rest = text.partition(" ")
    rest = rest.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    args: list[str] | str = rest
    if keyword.upper() == "HEALTHCHECK" and rest.startswith("CMD "):
        args = _json_or_text(rest[4:].strip())
        if isinstance(args, list):
            args = ["CMD", *args]
    elif rest.startswith("["):
        args = _json_or_text(rest)
    return Instruction(keyword.upper(), flags, args, number)


def _json_or_text(text: str) -> list[str] | str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
         "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        ins = parse_instruction(number, line)
        assert ins.keyword in KNOWN, f"line {number}: unknown instruction {ins.keyword}"
        if ins.keyword == "FROM":
            words = ins.words()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].upper() == "AS"), line
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"line {number}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for word in ins.words():
            name, eq, value = word.partition("=")
            assert eq, f"ENV {word}: use the NAME=value form"
            env[name] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages) -> Stage:
    return stages[-1]


def test_the_parser_handles_continuations_flags_and_exec_form():
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM a:1 AS b\nRUN --mount=type=bind,x=y echo \\\n  one \\\n"
        "  # note\n  two\nFROM c\nHEALTHCHECK --interval=5s CMD [\"x\", \"y\"]\nCMD [\"--z\"]\n")
    assert [(s.image, s.name) for s in parsed] == [("a:1", "b"), ("c", None)]
    run = parsed[0].instructions[0]
    assert run.flags == {"mount": "type=bind,x=y"} and run.words() == ["echo", "one", "two"]
    assert parsed[1].last("HEALTHCHECK").args == ["CMD", "x", "y"]
    assert parsed[1].last("CMD").args == ["--z"]


# ==========================================================================
# Dockerfile
# ==========================================================================

PINNED = re.compile(r"python:3\.11-slim-bookworm@(sha256:[0-9a-f]{64})")


def test_multi_stage_build_on_python_slim_pinned_by_digest(stages, final):
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name == "builder"
    assert builder.image == final.image and PINNED.fullmatch(final.image), final.image
    assert "pip wheel" in builder.text() and "build-essential" in builder.text()
    labels = labels_of(final)
    assert labels["org.opencontainers.image.base.digest"] == PINNED.fullmatch(final.image)[1]


def labels_of(stage: Stage) -> dict[str, str]:
    labels: dict[str, str] = {}
    for ins in stage.all("LABEL"):
        labels.update(word.split("=", 1) for word in ins.words())
    return labels


def args_of(stage: Stage) -> dict[str, str]:
    return dict(word.split("=", 1) for ins in stage.all("ARG") for word in ins.words())


def test_oci_labels(final):
    labels, args = labels_of(final), args_of(final)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    oci = "org.opencontainers.image."
    assert labels[oci + "title"] == project["name"]
    assert labels[oci + "licenses"] == project["license"]
    assert labels[oci + "description"] == project["description"]
    assert labels[oci + "source"] == project["urls"]["Homepage"]
    for name, arg in (("version", "VERSION"), ("revision", "REVISION"), ("created", "CREATED")):
        assert labels[oci + name] == "${" + arg + "}" and arg in args  # given with --build-arg
    assert args["VERSION"] == __version__


def test_dependencies_are_a_layer_built_before_the_source_is_copied(stages, final):
    steps = stages[0].instructions
    deps = next(i for i, ins in enumerate(steps)
                if ins.keyword == "RUN" and "pip wheel" in ins.args and "--requirement" in ins.args)
    source = next(i for i, ins in enumerate(steps) if ins.keyword == "COPY" and "mysqlpool_proxy" in ins.words())
    assert [ins.words()[:-1] for ins in steps[:deps] if ins.keyword == "COPY"] == [["pyproject.toml"]]
    assert deps < source
    # ... and installed in the final stage in a RUN of its own, before the project's wheel
    installs = [ins for ins in final.all("RUN") if "pip install" in ins.args]
    assert len(installs) == 2 and "--no-deps" not in installs[0].args and "--no-deps" in installs[1].args


def test_the_dependency_list_the_builder_extracts_is_pyprojects(stages, tmp_path):
    run = next(ins for ins in stages[0].all("RUN") if "tomllib" in ins.args)
    extract = run.args.split("&&")[0].replace("/tmp/requirements.txt", str(tmp_path / "req.txt"))
    subprocess.run(["sh", "-c", extract.replace("python ", f"{sys.executable} ", 1)], cwd=ROOT, check=True,
                   timeout=30)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (tmp_path / "req.txt").read_text().splitlines() == project["dependencies"]


def test_the_builder_copies_what_the_package_build_reads(stages):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = {word for ins in stages[0].all("COPY") for word in ins.words()[:-1]}
    assert {"pyproject.toml", "setup.py", project["readme"], *project["license-files"], "mysqlpool_proxy"} <= copied


def test_final_stage_installs_only_the_builders_wheels(final):
    text = final.text()
    for tool in ("gcc", "build-essential", "g++", "make ", "apt-get install"):
        assert tool not in text, tool
    installs = [i for i in final.all("RUN") if "pip install" in i.args]
    assert installs and all("--no-index" in i.args for i in installs)
    assert any("from=builder" in i.flags.get("mount", "") for i in installs)


def test_runs_as_a_numeric_non_root_user(final):
    user = final.last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes runAsNonRoot can check it
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert f"--uid {uid}" in final.text()


def test_exposes_the_default_ports(final):
    exposed = {int(p.split("/")[0]) for i in final.all("EXPOSE") for p in i.words()}
    assert exposed == {PROXY_PORT, ADMIN_PORT, METRICS_PORT}


def test_env_defaults_are_settings_the_config_accepts(final):
    env = env_of(final)
    config = load_config(None, environ={**env, **A_USER})
    assert config.proxy.listen_address == parse_listen(f"0.0.0.0:{PROXY_PORT}")
    assert config.metrics.listen_address == parse_listen(f"0.0.0.0:{METRICS_PORT}")
    assert config.admin.listen_address.host == "127.0.0.1"  # the console stays on loopback


def test_entrypoint_is_the_console_script(final):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint.exec_form and entrypoint.args == ["mysqlpool-proxy"]
    assert scripts["mysqlpool-proxy"] == "mysqlpool_proxy.cli:main"


def test_cmd_reads_the_clis_default_config_path(final):
    cmd = final.last("CMD")
    assert cmd.exec_form and cmd.args == ["--config", DEFAULT_CONFIG_PATH]
    assert cli.build_parser().parse_args(cmd.args).config == DEFAULT_CONFIG_PATH


def test_the_placeholder_config_lets_the_image_run_from_env_alone(final, tmp_path):
    """The default CMD names a file; the image creates it, and it loads with env settings only."""
    creating = [i for i in final.all("RUN") if f"> {DEFAULT_CONFIG_PATH}" in i.args]
    assert len(creating) == 1
    command = creating[0].args.split("&&")[0].replace(DEFAULT_CONFIG_PATH, str(tmp_path / "config.toml"))
    subprocess.run(["sh", "-c", command], check=True, timeout=30)
    config = load_config(str(tmp_path / "config.toml"), environ={**env_of(final), **A_USER})
    assert [u.name for u in config.users] == ["app"]


def test_stops_with_sigterm(final):
    assert final.last("STOPSIGNAL").args == "SIGTERM"  # mysqlpool_proxy.app drains on SIGTERM


def healthcheck_url(final: Stage) -> tuple[list[str], str]:
    check = final.last("HEALTHCHECK")
    assert check.exec_form and check.args[0] == "CMD"
    argv = check.args[1:]
    urls = re.findall(r"https?://[^'\"\s]+", " ".join(argv))
    assert len(urls) == 1
    return argv, urls[0]


def test_healthcheck_asks_a_served_route_on_the_metrics_port(final):
    argv, url = healthcheck_url(final)
    assert argv[0] == "python"  # in the image; no curl needed
    assert re.fullmatch(rf"http://127\.0\.0\.1:{METRICS_PORT}(/\S*)", url)
    assert url.split(str(METRICS_PORT), 1)[1] in SERVED_PATHS


class HttpServerThread:
    """The real HTTP endpoint of an unstarted Proxy, on its own loop thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> HttpServerThread:
        self.thread.start()
        self.server = self._run(self._start())
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _start(self):
        proxy = Proxy(load_config(None, environ=A_USER))
        return await http.start_http_server(proxy, "127.0.0.1:0", METRICS_PATH)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __exit__(self, *exc) -> None:
        self._run(http.stop_http_server(self.server))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def run_check(argv: list[str], url: str, port: int) -> int:
    """Run a healthcheck command with its URL pointed at `port` and `python` = this interpreter."""
    moved = url.replace(f":{METRICS_PORT}", f":{port}")
    command = [sys.executable if a == "python" else a.replace(url, moved) for a in argv]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


def test_the_healthcheck_command_passes_against_the_real_server(final):
    argv, url = healthcheck_url(final)
    with HttpServerThread() as server:
        assert run_check(argv, url, server.port) == 0
        # ... and fails where nothing is served (urllib raises on 404)
        assert run_check(argv, url.replace(http.HEALTH_PATH, "/nothing-here"), server.port) != 0


# ==========================================================================
# .dockerignore
# ==========================================================================

def dockerignore_excludes(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` lets a path back in."""
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", ""))
               for p in prefixes):
            excluded = not negate
    return excluded


def dockerignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_keeps_what_the_dockerfile_copies(stages):
    rules = dockerignore_rules()
    for stage in stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            for source in copy.words()[:-1]:
                assert (ROOT / source).exists(), source
                assert not dockerignore_excludes(source, rules), source
    for needed in ("mysqlpool_proxy/proxy/proxy.py", "mysqlpool_proxy/protocol/__init__.py", "README.md"):
        assert not dockerignore_excludes(needed, rules), needed


def test_dockerignore_leaves_out_vcs_venvs_caches_and_tests():
    rules = dockerignore_rules()
    for junk in (".git/HEAD", ".venv/bin/python", ".pytest_cache/v", ".ruff_cache/x", ".hypothesis/x",
                 "bench/results/r.json", "tests/unit/test_deploy.py", "mysqlpool_proxy/__pycache__/x.pyc",
                 "mysqlpool_proxy/protocol/__pycache__/y.pyc", "mysqlpool_proxy.egg-info/PKG-INFO",
                 "deploy/docker-compose.yml", "build/lib/x.py", "dist/x.whl"):
        assert dockerignore_excludes(junk, rules), junk


# ==========================================================================
# YAML: Kubernetes and Compose
# ==========================================================================

@pytest.fixture(scope="module")
def yaml():
    return pytest.importorskip("yaml", reason="PyYAML is not installed (it belongs in the test extras)")


@pytest.fixture(scope="module")
def k8s(yaml) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(K8S.read_text()) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


@pytest.fixture(scope="module")
def pod(k8s) -> dict:
    [deployment] = by_kind(k8s, "Deployment")
    return deployment["spec"]["template"]


def proxy_container(pod_spec: dict) -> dict:
    found = [c for c in pod_spec["containers"] + pod_spec.get("initContainers", [])
             if c["image"].split(":")[0].endswith("mysqlpool-proxy")]
    assert len(found) == 1
    return found[0]


def app_container(pod_spec: dict) -> dict:
    others = [c for c in pod_spec["containers"] if c is not proxy_container(pod_spec)]
    assert len(others) == 1
    return others[0]


def literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_keys(docs: list[dict]) -> dict[str, set[str]]:
    return {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
            for s in by_kind(docs, "Secret")}


def file_backed(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """env with every *_FILE path replaced by a real file holding a dummy secret."""
    out = dict(env)
    for name in env:
        if name.endswith("_FILE"):
            stand_in = tmp_path / name
            stand_in.write_text("dummy-secret\n")
            out[name] = str(stand_in)
    return out


def test_k8s_proxy_env_is_a_valid_config(pod, tmp_path):
    env = literal_env(proxy_container(pod["spec"]))
    config = load_config(None, environ=file_backed(env, tmp_path))
    assert config.proxy.listen_address == parse_listen(f"127.0.0.1:{PROXY_PORT}")  # the pod's loopback
    assert config.metrics.listen_address == parse_listen(f"0.0.0.0:{METRICS_PORT}")  # probes, Prometheus
    assert config.metrics.path == METRICS_PATH
    assert not config.admin.enabled
    assert config.users[0].password == "dummy-secret"


def test_k8s_password_file_comes_from_the_secret(k8s, pod):
    spec = pod["spec"]
    proxy = proxy_container(spec)
    path = literal_env(proxy)["MYSQLPOOL_USERS_0_PASSWORD_FILE"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    [mount] = [m for m in proxy["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    secret = volumes[mount["name"]]["secret"]
    key = path[len(mount["mountPath"].rstrip("/")) + 1:]
    assert key in secret_keys(k8s)[secret["secretName"]]
    assert mount.get("readOnly") is True
    # The file is readable by the proxy's user: group-readable and the pod's fsGroup is its group.
    user = proxy["securityContext"]
    assert secret["defaultMode"] & 0o040 and spec["securityContext"]["fsGroup"] == user["runAsGroup"]


def test_k8s_uid_matches_the_image(pod, final):
    uid, _, gid = final.last("USER").args.partition(":")
    context = proxy_container(pod["spec"])["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_k8s_app_reaches_the_proxy_on_loopback(k8s, pod):
    spec = pod["spec"]
    app, proxy = app_container(spec), proxy_container(spec)
    env = {e["name"]: e for e in app["env"]}
    user = literal_env(proxy)["MYSQLPOOL_USERS_0_NAME"]
    dsn = env["DATABASE_URL"]["value"]
    assert re.fullmatch(rf"mysql://{user}:\$\((\w+)\)@127\.0\.0\.1:{PROXY_PORT}/\w+", dsn)
    password_var = re.search(r"\$\((\w+)\)", dsn)[1]
    ref = env[password_var]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in secret_keys(k8s)[ref["name"]]
    # $(VAR) is only expanded when VAR is defined earlier in the list.
    names = [e["name"] for e in app["env"]]
    assert names.index(password_var) < names.index("DATABASE_URL")


def resolve_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_k8s_probes_and_ports(pod):
    proxy = proxy_container(pod["spec"])
    assert {p["containerPort"] for p in proxy["ports"]} == {PROXY_PORT, METRICS_PORT}
    readiness, liveness = proxy["readinessProbe"]["httpGet"], proxy["livenessProbe"]["httpGet"]
    assert readiness["path"] == http.READY_PATH and liveness["path"] == http.HEALTH_PATH
    assert resolve_port(proxy, readiness["port"]) == resolve_port(proxy, liveness["port"]) == METRICS_PORT


def test_k8s_prometheus_annotations(pod):
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == METRICS_PATH


def test_k8s_grace_period_covers_prestop_and_drain(pod):
    spec = pod["spec"]
    proxy = proxy_container(spec)
    command = proxy["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    shutdown = float(literal_env(proxy).get("MYSQLPOOL_PROXY_SHUTDOWN_TIMEOUT", ProxyConfig().shutdown_timeout))
    assert spec["terminationGracePeriodSeconds"] >= float(command[1]) + shutdown + 5


# -- compose ----------------------------------------------------------------------------

_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand(value) -> str:
    """Compose's ${VAR:-default}, with the variables unset."""
    text = str(value)
    assert "$" not in _DEFAULTED.sub("", text), f"{text}: use ${{VAR:-default}} so it runs as is"
    return _DEFAULTED.sub(lambda m: m[2], text)


@pytest.fixture(scope="module")
def compose(yaml) -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment: as a mapping"
    return {k: expand(v) for k, v in env.items()}


def test_compose_proxy_is_built_from_the_dockerfile(compose):
    build = compose["services"]["proxy"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_proxy_env_is_a_valid_config(compose, final):
    services = compose["services"]
    env = {**env_of(final), **compose_env(services["proxy"])}  # the image's ENV, then compose's
    config = load_config(None, environ=env)
    assert config.backend.host in services  # a service name
    assert config.backend.port == 3306
    db = compose_env(services[config.backend.host])
    assert (db["MARIADB_USER"], db["MARIADB_PASSWORD"]) == (config.users[0].name, config.users[0].password)
    published = {int(p.rsplit(":", 1)[1]) for p in services["proxy"]["ports"]}
    assert published == {config.proxy.listen_address.port, config.metrics.listen_address.port}
    assert published == {PROXY_PORT, METRICS_PORT}
    grace = int(services["proxy"]["stop_grace_period"].rstrip("s"))
    assert grace > config.proxy.shutdown_timeout


def test_compose_app_uses_the_proxy(compose):
    services = compose["services"]
    app, proxy = compose_env(services["app"]), compose_env(services["proxy"])
    assert app["DATABASE_HOST"] == "proxy" and int(app["DATABASE_PORT"]) == PROXY_PORT
    assert (app["DATABASE_USER"], app["DATABASE_PASSWORD"]) == (
        proxy["MYSQLPOOL_USERS_0_NAME"], proxy["MYSQLPOOL_USERS_0_PASSWORD"])
    script = next(v.split(":")[0] for v in services["app"]["volumes"] if ".py:" in v)
    source = (COMPOSE.parent / script).read_text()
    compile(source, script, "exec")
    assert "DATABASE_PASSWORD" in source


def test_compose_healthchecks_and_startup_order(compose):
    services = compose["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]
    test = services["proxy"]["healthcheck"]["test"][1:]
    [url] = re.findall(r"http://[^'\"\s]+", " ".join(test))
    assert url == f"http://127.0.0.1:{METRICS_PORT}{http.READY_PATH}"


# ==========================================================================
# Grafana and alert rules against the collector
# ==========================================================================

@pytest.fixture(scope="module")
def exported() -> Exported:
    """sample name -> label -> values seen, from a collector with every family populated."""
    loop = asyncio.new_event_loop()
    try:
        proxy = Proxy(load_config(None, environ=A_USER), loop)
        stats = proxy.pools["app"].stats
        stats.connect_errors[2003] += 1
        stats.count_query("query")
        text = generate_latest(build_registry(proxy)).decode()
    finally:
        loop.close()
    return exported_names(text)


def test_dashboard_queries_use_exported_metrics_and_labels(exported):
    for expr in dashboard_exprs():
        check_expr(expr, exported)


def test_alert_rules_use_exported_metrics_and_labels(yaml, exported):
    for expr in alert_exprs(yaml):
        check_expr(expr, exported)


def test_the_expression_checker_catches_mistakes(exported):
    with pytest.raises(AssertionError):
        check_expr('mysqlpool_backend_connections{state="inuse"}', exported)
    with pytest.raises(AssertionError):
        check_expr("rate(mysqlpool_queries[5m])", exported)
    with pytest.raises(AssertionError):
        check_expr("sum by (command) (mysqlpool_waiting_clients)", exported)


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
        assert panel.get("description"), panel["title"]


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_the_operational_questions():
    exprs = "\n".join(dashboard_exprs())
    for needed in ('mysqlpool_backend_connections{', 'state="in_use"', 'state="idle"',
                   "mysqlpool_backend_connections_max", "mysqlpool_waiting_clients",
                   "histogram_quantile(0.5,", "histogram_quantile(0.99,", "mysqlpool_checkout_wait_seconds_bucket",
                   "mysqlpool_client_refused_total", "mysqlpool_backend_closed_total",
                   "mysqlpool_backend_connect_errors_total", "mysqlpool_pinned_clients",
                   "mysqlpool_multiplexing_ratio", "mysqlpool_queries_total", "mysqlpool_bytes_total",
                   "mysqlpool_query_duration_seconds_bucket", "mysqlpool_transaction_duration_seconds_bucket",
                   "mysqlpool_oldest_waiter_seconds", "mysqlpool_pool_client_connections",
                   "mysqlpool_pool_bytes_total", "mysqlpool_backend_ping_seconds_bucket",
                   "mysqlpool_backend_connection_age_max_seconds", "process_cpu_seconds_total",
                   "process_resident_memory_bytes", "process_open_fds"):
        assert needed in exprs, needed


def test_alert_rules_cover_the_agreed_conditions(yaml):
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
    by_metric = {name: r for r in rules for name, _ in SELECTOR.findall(r["expr"])}
    assert by_metric["mysqlpool_waiting_clients"]["for"] == "5m"
    assert "histogram_quantile(0.99" in by_metric["mysqlpool_checkout_wait_seconds_bucket"]["expr"]
    assert "rate(mysqlpool_client_refused_total" in by_metric["mysqlpool_client_refused_total"]["expr"]
    assert "rate(mysqlpool_backend_connect_errors_total" in by_metric[
        "mysqlpool_backend_connect_errors_total"]["expr"]
    assert "mysqlpool_ready == 0" in by_metric["mysqlpool_ready"]["expr"]
    assert by_metric["mysqlpool_oldest_waiter_seconds"]["labels"]["severity"] == "warning"
    for histogram in ("mysqlpool_query_duration_seconds_bucket", "mysqlpool_transaction_duration_seconds_bucket",
                      "mysqlpool_backend_ping_seconds_bucket"):
        assert "histogram_quantile(0.99" in by_metric[histogram]["expr"], histogram
    assert "process_max_fds" in by_metric["process_open_fds"]["expr"]
