"""docker-compose.yml and deploy/nginx.conf: valid, and wired the way the README says.

Compose itself validates the file, with no Docker engine (`config` asks no daemon): the
`docker compose` plugin if the machine has it, else a `docker-compose` binary (v2, or
Debian's Python 1.29: `apt-get install docker-compose`). Where none is found the test fails
in CI (CI set) and skips elsewhere with a one-line hint. The normalised configuration it
prints is then checked: both replicas on the same PostgreSQL host `postgres`, the password
from .env only, a healthy database before the replicas, the load balancer in front of both.

nginx.conf is parsed here (braces, semicolons, directives); where an `nginx` binary exists,
`nginx -t` checks a copy too (where that nginx predates `resolve`, 1.27.3, with the
replicas' names, which resolve only on the Compose network, swapped for 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
HOW_TO_GET = (
    "no Compose to validate docker-compose.yml: `apt-get install docker-compose` (Debian) "
    "or install the `docker compose` plugin"
)
REPLICAS = ("replica-1", "replica-2")
SLACK_ROUTES = ("/slack/events", "/slack/install", "/slack/oauth_redirect")
# Stand-ins for .env: the test sees where each value ends up, and never reads a real .env.
PASSWORD = "pw-from-dotenv-7f3a9c"
DOTENV = {
    "POSTGRES_PASSWORD": PASSWORD,
    "GEMINI_API_KEY": "gemini-key-from-dotenv",
    "SLACK_BOT_TOKEN": "xoxb-from-dotenv",
    "SLACK_SIGNING_SECRET": "signing-secret-from-dotenv",
    # Overridden by the compose file: every replica must use the shared database.
    "DATABASE_URL": "sqlite:///./data/from-dotenv.db",
    "HTTP_HOST": "127.0.0.1",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|_KEYS\b", re.IGNORECASE)


def compose_command() -> tuple[list[str], bool] | None:
    """The Compose CLI and whether it prints JSON (v2); None where there is none."""
    docker = shutil.which("docker")
    if docker and _ok([docker, "compose", "version"]):
        return [docker, "compose"], True
    binary = shutil.which("docker-compose")
    if binary is None:
        return None
    out = subprocess.run(
        [binary, "version", "--short"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    return [binary], not out.startswith("1.")


def _ok(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


@pytest.fixture(scope="module")
def compose() -> tuple[list[str], bool]:
    found = compose_command()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(HOW_TO_GET)  # in CI the compose file is always validated
        pytest.skip(HOW_TO_GET)
    return found


def project(tmp: Path, dotenv: dict[str, str]) -> Path:
    """A copy of the Compose project (file, deploy/, Dockerfile) with a stand-in .env."""
    shutil.copy(COMPOSE_FILE, tmp / "docker-compose.yml")
    shutil.copy(ROOT / "Dockerfile", tmp / "Dockerfile")
    shutil.copytree(ROOT / "deploy", tmp / "deploy")
    (tmp / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    return tmp


def run_config(cmd: list[str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Only .env may feed the interpolation: drop what this shell might have set.
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("POSTGRES_", "COMPOSE_", "DOCKER_")) or k == "LB_PORT")
    }
    return subprocess.run(
        [*cmd, "config", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def yaml_to_data(yaml_text: str, compose_binary: str) -> Any:
    """Parse Compose 1.x's YAML output with the PyYAML that Compose 1.x itself runs on (it is
    a Python program needing it), so this project takes no YAML dependency."""
    first = Path(compose_binary).read_text(errors="replace").splitlines()[0]
    assert first.startswith("#!"), f"{compose_binary} is not a Python script"
    python = first[2:].strip().split()
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    done = subprocess.run(
        [*python, "-c", code], input=yaml_text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"nginx -t refused deploy/nginx.conf:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config(compose: tuple[list[str], bool], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`compose config` of the project: validated and normalised (.env inlined)."""
    cmd, prints_json = compose
    cwd = project(tmp_path_factory.mktemp("compose"), DOTENV)
    done = run_config(cmd, cwd, *(["--format", "json"] if prints_json else []))
    assert done.returncode == 0, f"compose config refused docker-compose.yml:\n{done.stderr}"
    return json.loads(done.stdout) if prints_json else yaml_to_data(done.stdout, cmd[0])


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def healthcheck_test(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def image_is_pinned(image: str, name: str) -> bool:
    """`name:MAJOR.MINOR` (optionally a patch and a variant like -alpine), or a digest."""
    return image.startswith(f"{name}@sha256:") or bool(
        re.fullmatch(rf"{name}:\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", image)
    )


# --- the compose file ---


def test_compose_validates_and_has_the_services(config: Any) -> None:
    assert set(config["services"]) >= {"postgres", *REPLICAS, "lb"}


def test_postgres_pinned_with_named_volume_healthcheck_and_password_from_dotenv(
    config: Any,
) -> None:
    pg = config["services"]["postgres"]
    assert image_is_pinned(pg["image"], "postgres"), pg["image"]
    assert "pg_isready" in healthcheck_test(pg)
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in pg["volumes"]]
    named = [v.split(":", 1)[0] for v in volumes]
    assert any(n in (config.get("volumes") or {}) for n in named), volumes
    assert env_of(pg)["POSTGRES_PASSWORD"] == PASSWORD


def test_replicas_share_the_postgres_database(config: Any) -> None:
    pg_env = env_of(config["services"]["postgres"])
    urls = {env_of(config["services"][name])["DATABASE_URL"] for name in REPLICAS}
    assert len(urls) == 1, urls  # the same database, not one each
    url = urlsplit(urls.pop())
    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "postgres"
    assert url.port in (None, 5432)
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.password == PASSWORD  # from .env, never written in the file
    assert url.path.strip("/") == pg_env["POSTGRES_DB"]


def test_replicas_wait_for_postgres_listen_on_all_interfaces_and_read_dotenv(
    config: Any,
) -> None:
    hostnames = set()
    for name in REPLICAS:
        service = config["services"][name]
        env = env_of(service)
        assert "build" in service, f"{name} is not built from the repo's Dockerfile"
        assert depends_on(service).get("postgres") == "service_healthy"
        assert env["HTTP_HOST"] == "0.0.0.0"
        assert env["SLACK_SIGNING_SECRET"] == DOTENV["SLACK_SIGNING_SECRET"]  # env_file .env
        hostnames.add(service.get("hostname", name))
    assert len(hostnames) == len(REPLICAS)  # each replica's name (and lock) tells them apart


def test_replicas_have_a_healthcheck_on_healthz(config: Any) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    from_image = re.search(r"^HEALTHCHECK\b.*?/healthz", dockerfile, re.M | re.S) is not None
    for name in REPLICAS:
        test = healthcheck_test(config["services"][name])
        disabled = (config["services"][name].get("healthcheck") or {}).get("disable")
        assert not disabled
        assert "/healthz" in test or (not test and from_image), name


def test_load_balancer_pinned_fronts_both_replicas(config: Any) -> None:
    lb = config["services"]["lb"]
    assert image_is_pinned(lb["image"], "nginx"), lb["image"]
    assert set(depends_on(lb)) >= set(REPLICAS)
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in lb["volumes"]]
    assert any(m.split(":", 1)[0].endswith("deploy/nginx.conf") for m in mounts), mounts
    assert lb.get("ports"), "the load balancer publishes no port"
    server = nginx_block(parse_nginx(NGINX_CONF.read_text()), "http", "server")
    listen = {d.args[0].rsplit(":", 1)[-1] for d in server.children if d.name == "listen"}
    targets = {
        str(p["target"]) if isinstance(p, dict) else str(p).split("/")[0].rsplit(":", 1)[-1]
        for p in lb["ports"]
    }
    assert targets <= listen, (targets, listen)


def test_no_literal_secrets_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    urls_checked = 0
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split(" #", 1)[0].strip()
        if code.startswith("#"):
            continue
        m = re.match(r"-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?\s*[:=]\s*(.*)$", code)
        if m and SECRET_NAME.search(m.group(1)) and m.group(2):
            value = m.group(2).strip("\"'")
            assert value.startswith("${"), f"line {n}: {m.group(1)} has a literal value"
        # user:password@ in a URL: the password must be one ${...} substitution.
        for userinfo in re.findall(r"://((?:\$\{[^}]*\}|[^/@\s])+)@", code):
            _, _, password = re.sub(r"\$\{[^}]*\}", "${}", userinfo).partition(":")
            assert password in ("", "${}"), f"line {n}: a literal password in a URL"
            urls_checked += 1
    assert urls_checked, "no database URL found to check"


def test_the_password_is_required(compose: tuple[list[str], bool], tmp_path: Path) -> None:
    cwd = project(tmp_path, {k: v for k, v in DOTENV.items() if k != "POSTGRES_PASSWORD"})
    done = run_config(compose[0], cwd, "--quiet")
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr


# --- nginx.conf ---


@dataclass
class Directive:
    name: str
    args: list[str]
    children: list[Directive] = field(default_factory=list)
    block: bool = False


TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|[{};]|[^\s{};\"'#]+")


def parse_nginx(text: str) -> list[Directive]:
    """nginx's grammar, enough to check structure: `name args;` and `name args { ... }`."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, f"nginx.conf: cannot read at offset {pos}"
        pos, tok = m.end(), m.group()
        if tok.isspace() or tok.startswith("#"):
            continue
        if tok in ("{", ";"):
            assert words, f"nginx.conf: {tok!r} with no directive before offset {pos}"
            d = Directive(words[0], [w.strip("\"'") for w in words[1:]], block=tok == "{")
            stack[-1].append(d)
            if d.block:
                stack.append(d.children)
            words = []
        elif tok == "}":
            assert not words, f"nginx.conf: {' '.join(words)!r} lacks its ';'"
            assert len(stack) > 1, f"nginx.conf: unbalanced '}}' before offset {pos}"
            stack.pop()
        else:
            words.append(tok)
    assert not words, f"nginx.conf: {' '.join(words)!r} lacks its ';'"
    assert len(stack) == 1, "nginx.conf: a block is not closed"
    return stack[0]


def nginx_block(tree: list[Directive], *path: str) -> Directive:
    found = [d for d in tree if d.name == path[0] and d.block]
    assert len(found) == 1, f"nginx.conf: expected one {path[0]} block"
    return found[0] if len(path) == 1 else nginx_block(found[0].children, *path[1:])


def walk(tree: list[Directive]) -> list[Directive]:
    return [x for d in tree for x in (d, *walk(d.children))]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert m, value
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def test_nginx_conf_parses_and_spreads_slack_routes_over_both_replicas() -> None:
    tree = parse_nginx(NGINX_CONF.read_text())
    http = nginx_block(tree, "http")
    upstreams = {d.args[0]: d for d in http.children if d.name == "upstream"}
    assert len(upstreams) == 1
    ((upstream_name, upstream),) = upstreams.items()
    servers = [d.args[0] for d in upstream.children if d.name == "server"]
    assert sorted(servers) == sorted(f"{r}:8080" for r in REPLICAS)
    server = nginx_block(tree, "http", "server")
    locations = {tuple(d.args): d for d in server.children if d.name == "location"}
    for route in SLACK_ROUTES:
        loc = locations.get(("=", route)) or locations.get((route,))
        assert loc is not None, f"no location for {route}"
        passes = [d.args[0] for d in loc.children if d.name == "proxy_pass"]
        # No URI after the upstream: the path and query string go through unchanged.
        assert passes == [f"http://{upstream_name}"], (route, passes)


def test_nginx_keeps_the_signed_request_intact_and_answers_in_time() -> None:
    everything = walk(parse_nginx(NGINX_CONF.read_text()))
    names = {d.name: d for d in everything}
    # The body and headers Slack signed reach the replica as sent.
    for name in ("proxy_set_body", "proxy_pass_request_body", "proxy_pass_request_headers"):
        assert name not in names, f"{name} may change what Slack signed"
    for d in everything:
        if d.name == "proxy_set_header":
            assert not d.args[0].lower().startswith("x-slack-"), d.args
        if d.name == "underscores_in_headers" or d.name == "ignore_invalid_headers":
            raise AssertionError(f"{d.name} changes which headers pass")
        # Slack gives 3 s: a replica that cannot be reached must not eat them.
        if d.name == "proxy_connect_timeout":
            assert seconds(d.args[0]) <= 2, d.args
        if d.name in ("proxy_read_timeout", "proxy_send_timeout"):
            assert seconds(d.args[0]) <= 30, (d.name, d.args)
        if d.name == "proxy_next_upstream":
            assert "non_idempotent" not in d.args  # a slash command must never run twice
    server = nginx_block(parse_nginx(NGINX_CONF.read_text()), "http", "server")
    events = [d for d in server.children if d.name == "location" and "/slack/events" in d.args]
    reads = [seconds(d.args[0]) for d in events[0].children if d.name == "proxy_read_timeout"]
    assert reads and reads[0] <= 10


def nginx_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def test_nginx_conf_is_syntactically_sane(tmp_path: Path) -> None:
    """Always parsed here; also `nginx -t` where nginx is installed (not required, so this
    never skips: without nginx the parse is the check)."""
    parse_nginx(NGINX_CONF.read_text())
    binary = shutil.which("nginx")
    if binary is not None:
        nginx_t(binary, tmp_path)


def nginx_t(binary: str, tmp_path: Path) -> None:
    text = NGINX_CONF.read_text()
    if nginx_version(binary) < (1, 27, 3):
        # Before `resolve` (1.27.3), nginx resolves upstream names as it reads them, and the
        # replicas' names exist only on the Compose network: stand-ins on 127.0.0.1.
        for i, replica in enumerate(REPLICAS):
            text = re.sub(
                rf"server {re.escape(replica)}:8080 resolve",
                f"server 127.0.0.1:{18080 + i}",
                text,
            )
    temp_paths = "".join(
        f"    {m}_temp_path {tmp_path / m};\n"
        for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    done = subprocess.run(
        [binary, "-t", "-q", "-c", str(conf), "-p", f"{tmp_path}/", "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"nginx -t refused deploy/nginx.conf:\n{done.stderr}"
