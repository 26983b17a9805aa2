"""The servers scenarios 9 and 10 start, each in a session of its own: fake upstreams,
`llmroute serve` (with a client key or without), nginx as a bare reverse proxy, LiteLLM's
proxy, Portkey's gateway, stunnel with a throw-away CA."""

import json
import os
import re
import signal
import socket
import subprocess
import time

from .common import (FAKE, LITELLM_CLI, LLMROUTE, MODELS, NGINX, NODE, PORTKEY, ROOT,
                     SERVE_FLOOR, SIZES, STUNNEL, fresh, llmroute_env, path)
from .meter import http, session_pids

LIVE = []  # servers to stop if the harness stops early
MODELS_ENV = {"LLMROUTE_MODELS": MODELS}  # what `model: auto` routes among
LITELLM_KEY = "sk-bench"  # the LiteLLM proxy's master key (any `sk-` string)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process started by scenario 9 or 10, in a session of its own so
    that its CPU time and memory can be summed over whatever it starts, and so
    that stop() ends exactly that."""

    def __init__(self, name, cmd, env=None, stdout_path=None):
        self.name = name
        self.log_path = path(f"{name}.log")
        self._log = open(self.log_path, "wb")
        self._out = open(stdout_path, "wb") if stdout_path else self._log
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._log, start_new_session=True)
        self.started = t
        self.ready_s = None
        LIVE.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list:
        return session_pids(self.proc.pid) if self.alive() else []

    def log_tail(self, n=400) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").strip()[-n:]
        except OSError:
            return ""

    def wait_http(self, url, timeout_s, headers=None) -> bool:
        """Polls GET url until it answers 200; False if the process exits or
        time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            status, _ = http("GET", url, headers=headers, timeout=2)
            if status == 200:
                self.ready_s = time.perf_counter() - self.started
                return True
            time.sleep(0.1)
        return False

    def up_or_stop(self, url, timeout_s, what):
        """Waits for GET url to answer 200; else stops the server and raises
        with the end of its log, naming it `what`."""
        if not self.wait_http(url, timeout_s):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{what} did not come up: {tail}")

    def wait_port(self, port, timeout_s) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                self.ready_s = time.perf_counter() - self.started
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc.wait()
        for f in {self._log, self._out}:
            f.close()
        if self in LIVE:
            LIVE.remove(self)


def stop_all():
    for s in list(LIVE):
        s.stop()


def start_fake(name, extra=()):
    """A fake upstream of the scenario's own, so that its CPU time is known."""
    url_file = path(f"{name}.url")
    s = Server(name, [FAKE, "--workers", "2"] + list(extra), stdout_path=url_file)
    for _ in range(200):
        if os.path.getsize(url_file) > 0:
            with open(url_file) as f:
                s.url = f.readline().strip()
            s.ready_s = time.perf_counter() - s.started
            return s
        if not s.alive():
            break
        time.sleep(0.05)
    s.stop()
    raise RuntimeError(f"fake-openrouter ({name}) did not start: {s.log_tail()}")


_serve_help = None


def serve_help() -> str:
    """`llmroute serve --help`, or "" when this llmroute has no `serve`."""
    global _serve_help
    if _serve_help is None:
        try:
            p = subprocess.run([LLMROUTE, "serve", "--help"], capture_output=True, text=True,
                               timeout=30)
            # A build without the subcommand takes `serve` for an input file
            # and prints the main help, with status 0: look for its flag.
            _serve_help = p.stdout if p.returncode == 0 and "--listen" in p.stdout else ""
        except (OSError, subprocess.TimeoutExpired):
            _serve_help = ""
    return _serve_help


def shown(cmd, port, upstream=None, store=None) -> str:
    """A command as the report shows it: no scratch paths, no port numbers."""
    text = " ".join([os.path.basename(cmd[0])] + list(cmd[1:]))
    if store:
        text = text.replace(store, "STORE")
    text = re.sub(rf"\b{port}\b", "PORT", text)
    if upstream:
        hostport = upstream.split("//", 1)[1].split("/", 1)[0]
        text = text.replace(hostport, "127.0.0.1:UPSTREAM")
    return re.sub(r"\S*/(config\.yaml)", r"\1", text.replace(ROOT + "/", ""))


# The client key of the contender with keys and policy on: every limit there
# is, each far above what the bench asks, so that every request passes all
# the checks (budget reserved and settled, rates counted, models matched,
# max_tokens capped) and none is refused.
KEY_ARGS = ["keys", "create", "bench", "--budget", "1000", "--per", "day", "--rpm", "10000000",
            "--tpm", "2000000000", "--models", "*", "--max-tokens", "4096", "--json"]


def make_key(env, db):
    """Makes the client key `bench` in the store `db`; returns its token and
    the command as the report shows it."""
    cmd = [LLMROUTE] + KEY_ARGS + ["--db", db]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    try:
        token = json.loads(p.stdout)["token"]
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"`llmroute keys create` exit {p.returncode}: "
                           f"{(p.stdout + p.stderr).strip()[-300:]}") from None
    text = " ".join(["llmroute"] + [f"'{a}'" if a == "*" else a for a in KEY_ARGS])
    return token, f"{text} --db STORE"


def start_llmroute(name, base_url, env, cache=False, retention=None, upkeep=None, db=None):
    port = free_port()
    cmd = [LLMROUTE, "serve", "--listen", f"127.0.0.1:{port}", "--base-url", base_url,
           "-j", str(SIZES["s9_connections"])]
    if db:
        cmd += ["--db", db]
    if "--quiet" in serve_help():
        cmd.append("-q")  # no access log: the peers write none either
    if not cache:
        cmd.append("--no-cache")
    if retention and "--retention" in serve_help():
        cmd += ["--retention", retention]
    if upkeep and "--upkeep-every" in serve_help():
        cmd += ["--upkeep-every", upkeep]
    s = Server(name, cmd, env=env)
    s.cmd = shown(cmd, port, base_url, store=db)
    s.base = f"http://127.0.0.1:{port}"
    s.up_or_stop(s.base + "/health", 60, "llmroute serve")
    return s


def start_llmroute_keyed(name, base_url, env, cache=False):
    """`llmroute serve` with a client key in its store, made before it
    starts: it then takes tokens, and checks each request against the key's
    policy. The server's `cmd` shows both commands; its `token` is the key's."""
    db = os.path.join(fresh("keyed-store"), "llmroute.db")
    token, key_cmd = make_key(env, db)
    s = start_llmroute(name, base_url, env, db=db, cache=cache)
    s.cmd = f"{key_cmd}` then `{s.cmd}"
    s.token = token
    s.key_store = (env, db)
    return s


def key_after(s):
    """`llmroute keys show bench` on a keyed server's store, once it has
    stopped: what the key spent, as a sign that its policy was applied."""
    env, db = s.key_store
    p = subprocess.run([LLMROUTE, "keys", "show", "bench", "--json", "--db", db],
                       capture_output=True, text=True, env=env, timeout=60)
    try:
        v = json.loads(p.stdout)
        return {k: v.get(k) for k in ("spent_usd", "left_usd", "state")}
    except ValueError:
        return {"failed": (p.stdout + p.stderr).strip()[-300:]}


# nginx as a bare reverse proxy: one worker process a core (2 here, as
# llmroute's runtime has one worker thread a core), HTTP/1.1 keep-alive to
# the upstream, no access log; keep-alive connections, on both sides, are
# not closed after a number of requests (nginx closes them after 1,000 by
# default; llmroute never does).
NGINX_WORKERS = 2
NGINX_CONF = """worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/client-body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream fake {{
        server {upstream};
        keepalive {keepalive};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_conf(d="DIR", upstream="127.0.0.1:UPSTREAM", port="PORT") -> str:
    """nginx.conf in the directory d; as the report shows it by default."""
    return NGINX_CONF.format(workers=NGINX_WORKERS, dir=d, upstream=upstream, port=port,
                             keepalive=SIZES["s9_connections"])


def start_nginx(name, upstream_url):
    """nginx in a scratch directory of its own (its nginx.conf, pid, logs and
    temporary files), in the foreground, passing every path on to the fake
    upstream as it came: `url` is the upstream's base URL through it."""
    if not NGINX:
        raise RuntimeError("no nginx")
    d = fresh("nginx")
    port = free_port()
    hostport = upstream_url.split("//", 1)[1].split("/", 1)[0]
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(d, hostport, port))
    cmd = [NGINX, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")]
    s = Server(name, cmd)
    s.cmd = " ".join(["nginx", "-p", "DIR", "-c", "DIR/nginx.conf", "-e", "DIR/error.log"])
    if not s.wait_port(port, 20):
        tail = s.log_tail()
        try:
            with open(os.path.join(d, "error.log")) as f:
                tail += f.read()[-400:]
        except OSError:
            pass
        s.stop()
        raise RuntimeError(f"nginx did not come up: {tail}")
    s.url = upstream_url.replace(f"http://{hostport}", f"http://127.0.0.1:{port}")
    return s


def start_serve_floor(name, base_url):
    """The server floor (examples/serve_floor.rs): llmroute's HTTP stack and
    upstream client passing each body on, and nothing else."""
    if not os.access(SERVE_FLOOR, os.X_OK):
        raise RuntimeError(f"no {SERVE_FLOOR}")
    port = free_port()
    s = Server(name, [SERVE_FLOOR, f"127.0.0.1:{port}", base_url])
    s.cmd = "serve_floor 127.0.0.1:PORT " + re.sub(r":\d+", ":UPSTREAM", base_url, count=1)
    s.base = f"http://127.0.0.1:{port}"
    s.up_or_stop(s.base + "/health", 30, "serve_floor")
    return s


def nginx_version() -> str:
    if not NGINX:
        return ""
    p = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    m = re.search(r"(nginx/\S+)", p.stdout + p.stderr)
    return m.group(1) if m else ""


def serve_env(extra=None) -> dict:
    env = llmroute_env()
    env.update(MODELS_ENV)
    env.update(extra or {})
    return env


def start_litellm(name, upstream_url):
    """LiteLLM's proxy (its `litellm` CLI, one uvicorn worker, its default)
    with one deployment, `openai/fast/a` on the fake upstream."""
    d = fresh("litellm-proxy")
    cfg = os.path.join(d, "config.yaml")
    with open(cfg, "w") as f:
        f.write("model_list:\n"
                "  - model_name: fast/a\n"
                "    litellm_params:\n"
                "      model: openai/fast/a\n"
                f"      api_base: {upstream_url}\n"
                "      api_key: bench\n"
                "general_settings:\n"
                f"  master_key: {LITELLM_KEY}\n"
                "litellm_settings:\n"
                "  telemetry: false\n"
                "  set_verbose: false\n")
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", DISABLE_SCHEMA_UPDATE="True")
    cmd = [LITELLM_CLI, "--config", cfg, "--host", "127.0.0.1", "--port", str(port)]
    s = Server(name, cmd, env=env)
    s.cmd = shown(cmd, port)
    s.base = f"http://127.0.0.1:{port}"
    s.up_or_stop(s.base + "/health/liveliness", 180, "the LiteLLM proxy")
    return s


def start_portkey(name):
    """Portkey's gateway: what `npx @portkey-ai/gateway --port=N --headless`
    runs, started with node directly so that no npx process sits in between."""
    port = free_port()
    cmd = [NODE, PORTKEY, f"--port={port}", "--headless"]
    s = Server(name, cmd)
    s.cmd = shown(cmd, port)
    s.base = f"http://127.0.0.1:{port}"
    s.up_or_stop(s.base + "/", 60, "Portkey's gateway")
    return s


def make_tls(d):
    """A throw-away CA and a certificate it signed for 127.0.0.1, as
    tests/integration/tls.rs describes."""
    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=llmroute bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


def start_stunnel(name, backend_url, cert, key):
    """stunnel terminating TLS in front of the fake upstream."""
    port = free_port()
    backend = backend_url.split("//", 1)[1].split("/", 1)[0]
    conf = path(f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"foreground = yes\npid =\ndebug = err\n\n[upstream]\n"
                f"accept = 127.0.0.1:{port}\nconnect = {backend}\n"
                f"cert = {cert}\nkey = {key}\n")
    s = Server(name, [STUNNEL, conf])
    if not s.wait_port(port, 20):
        tail = s.log_tail()
        s.stop()
        raise RuntimeError(f"stunnel did not come up: {tail}")
    s.url = backend_url.replace(f"http://{backend}", f"https://127.0.0.1:{port}")
    return s


def stunnel_version() -> str:
    if not STUNNEL:
        return ""
    p = subprocess.run([STUNNEL, "-version"], capture_output=True, text=True)
    m = re.search(r"^(stunnel \S+)", p.stdout + p.stderr, re.M)
    return m.group(1) if m else ""


def portkey_version() -> str:
    pkg = os.path.join(os.path.dirname(os.path.dirname(PORTKEY)), "package.json")
    try:
        with open(pkg) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return ""
