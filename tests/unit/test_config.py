"""geoq.config: the YAML file, its defaults, and one clear line for each mistake."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

import pytest
import yaml

from geoq.config import KEYS, Config, RouteConfig, connection_split, default_config, least_connections, load_config
from geoq.errors import ConfigError

MakeConfig = Callable[..., Path]
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def error_of(path: Path, env: Mapping[str, str] | None = None) -> str:
    """The one-line ConfigError message load_config gives for *path*."""
    with pytest.raises(ConfigError) as e:
        load_config(path, env={} if env is None else env)
    message = str(e.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: ")
    return message


def load(make: MakeConfig, text: str, env: Mapping[str, str] | None = None) -> Config:
    return load_config(make(text), env={} if env is None else env)


# --- good files -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_every_file_in_config_loads_with_an_empty_environment(name: str) -> None:
    config = load_config(CONFIG_DIR / name, env={})
    assert config.path == str(CONFIG_DIR / name)
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert config.redis.password is None


def test_the_config_directory_holds_example_dev_and_prod() -> None:
    assert {"example.yaml", "dev.yaml", "prod.yaml"} <= {p.name for p in CONFIG_DIR.glob("*.yaml")}


def test_the_dev_config_has_the_demo_routes_and_three_queues() -> None:
    config = load_config(CONFIG_DIR / "dev.yaml", env={})
    assert config.worker.concurrency == 500
    assert config.worker.queues == ("critical", "default", "bulk")
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9108)
    assert {t: (r.handler, r.queue) for t, r in config.routes.items()} == {
        "demo.noop": ("geoq.handlers.builtin:noop", "default"),
        "demo.sleep": ("geoq.handlers.builtin:sleep", "bulk"),
        "demo.fail": ("geoq.handlers.builtin:fail", "default"),
        "email.send": ("geoq.handlers.smtp:send", "default"),
        "http.fetch": ("geoq.handlers.http:fetch", "bulk"),
    }


def test_the_prod_config_takes_redis_from_the_environment() -> None:
    env = {"REDIS_URL": "rediss://redis.internal:6380/2", "REDIS_PASSWORD": "s3cret"}
    config = load_config(CONFIG_DIR / "prod.yaml", env=env)
    assert config.redis.url == "rediss://redis.internal:6380/2"
    assert config.redis.password == "s3cret"
    assert (config.worker.concurrency, config.logging.format) == (2000, "json")
    assert set(config.routes) == {"email.send", "http.fetch", "demo.noop", "demo.sleep", "demo.fail"}
    assert config.routes["http.fetch"].options["block_private_networks"] is True


def test_the_example_shows_every_key_of_the_schema() -> None:
    shown: set[str] = set()

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for knode, vnode in node.value:
                path = prefix + {"routes.": "<type>", "schedules.": "<name>"}.get(prefix, knode.value)
                shown.add(path)
                walk(vnode, path + ".")

    root = yaml.compose((CONFIG_DIR / "example.yaml").read_text())
    assert root is not None
    walk(root, "")
    assert {key.path for key in KEYS} <= shown


def test_an_empty_file_gives_every_default(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, "")
    assert config == dataclasses.replace(default_config(), path=config.path)
    assert config.worker.queues == ("default",) and config.worker.weights is None
    assert (config.worker.concurrency, config.worker.max_payload, config.worker.block_timeout) == (2000, 1048576, 1.0)
    assert (config.dead.max_jobs, config.dead.max_age, config.results.keep) == (100000, 30 * 86400.0, 86400.0)
    assert (config.metrics.listen, config.metrics.host, config.metrics.port) == ("0.0.0.0:9108", "0.0.0.0", 9108)
    assert (config.logging.format, config.logging.level) == ("plain", "info")
    assert config.redis.tls.check_hostname is True and config.routes == {}


def test_default_config_needs_no_file_and_takes_a_url() -> None:
    config = default_config(url="redis://cache.local:6380/3")
    assert config.path == "<defaults>"
    assert config.redis.url == "redis://cache.local:6380/3"
    assert config.worker.queues == ("default",)


def test_default_config_refuses_a_bad_url_in_one_line() -> None:
    with pytest.raises(ConfigError) as e:
        default_config(url="http://cache.local")
    assert str(e.value).startswith("<defaults>: redis.url: expected a Redis URL with scheme redis, rediss,")


def test_a_route_gets_the_design_defaults(tmp_config: MakeConfig) -> None:
    route = load(tmp_config, "routes: {report.build: {handler: myapp.jobs:build_report}}").routes["report.build"]
    assert route == RouteConfig(type="report.build", handler="myapp.jobs:build_report")
    assert (route.queue, route.timeout, route.max_retries) == ("default", 300.0, 5)
    assert (route.backoff.base, route.backoff.max, route.backoff.jitter) == (1.0, 600.0, "full")
    assert dict(route.options) == {}


def test_durations_and_sizes_take_units(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, """
        worker: {shutdown_grace: 500ms, heartbeat: 2s, dead_after: 1m, max_payload: 512kb, block_timeout: 250ms}
        dead: {max_age: 7d}
        results: {keep: 0}
        routes: {a.b: {handler: m:f, timeout: 1h, backoff: {base: 2, max: 5m}}}
    """)
    worker = config.worker
    assert (worker.shutdown_grace, worker.heartbeat, worker.dead_after) == (0.5, 2.0, 60.0)
    assert (worker.max_payload, worker.block_timeout) == (512 * 1024, 0.25)
    assert (config.dead.max_age, config.results.keep) == (7 * 86400.0, 0.0)
    route = config.routes["a.b"]
    assert (route.timeout, route.backoff.base, route.backoff.max) == (3600.0, 2.0, 300.0)


def test_queues_as_a_list_are_a_strict_priority_order(tmp_config: MakeConfig) -> None:
    worker = load(tmp_config, "worker: {queues: [critical, default, bulk]}").worker
    assert worker.queues == ("critical", "default", "bulk") and worker.weights is None


def test_queues_as_a_mapping_carry_weights_in_the_same_order(tmp_config: MakeConfig) -> None:
    worker = load(tmp_config, "worker: {queues: {critical: 5, default: 2.5, bulk: 1}}").worker
    assert worker.queues == ("critical", "default", "bulk") and worker.weights == (5.0, 2.5, 1.0)


def test_absent_queues_are_default_then_each_route_queue_once(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, """
        routes:
          a: {handler: m:a, queue: mail}
          b: {handler: m:b}
          c: {handler: m:c, queue: bulk}
          d: {handler: m:d, queue: mail}
    """)
    assert config.worker.queues == ("default", "mail", "bulk")


def test_env_variables_are_substituted_with_their_defaults(tmp_config: MakeConfig) -> None:
    text = """
        redis:
          url: redis://${REDIS_HOST:-localhost}:${REDIS_PORT:-6379}/0
          username: ${REDIS_USER:-}
        worker:
          concurrency: ${CONCURRENCY:-500}
          heartbeat: ${HEARTBEAT:-2s}
    """
    config = load(tmp_config, text)
    assert config.redis.url == "redis://localhost:6379/0" and config.redis.username is None
    assert (config.worker.concurrency, config.worker.heartbeat) == (500, 2.0)
    config = load(tmp_config, text, env={"REDIS_HOST": "db", "CONCURRENCY": "64", "REDIS_USER": "app"})
    assert config.redis.url == "redis://db:6379/0" and config.redis.username == "app"
    assert config.worker.concurrency == 64


def test_a_default_also_replaces_a_variable_set_but_empty(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, "worker:\n  concurrency: ${N:-7}\n", env={"N": ""})
    assert config.worker.concurrency == 7


def test_a_substituted_secret_stays_a_string_even_when_it_looks_like_a_number(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, """
        redis:
          password: ${REDIS_PASSWORD}
        routes:
          mail:
            handler: m:f
            options:
              port: ${PORT:-587}
              password: ${SMTP_PASSWORD}
    """, env={"REDIS_PASSWORD": "123456", "SMTP_PASSWORD": "0042"})
    assert config.redis.password == "123456"
    assert dict(config.routes["mail"].options) == {"port": 587, "password": "0042"}


# The options line of the email.send route in DESIGN.md, exactly as written there.
DESIGN_OPTIONS = ("options: {host: smtp.example.com, port: 587, starttls: true, "
                  "username: ${SMTP_USER}, password: ${SMTP_PASSWORD}}")
DESIGN_ROUTE = f"routes:\n  email.send:\n    handler: geoq.handlers.smtp:send\n    {DESIGN_OPTIONS}\n"


def test_the_design_options_line_loads_with_references_in_a_flow_mapping(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, DESIGN_ROUTE, env={"SMTP_USER": "mailer", "SMTP_PASSWORD": "0042"})
    assert dict(config.routes["email.send"].options) == {
        "host": "smtp.example.com", "port": 587, "starttls": True, "username": "mailer", "password": "0042"}


def test_the_design_options_line_without_its_variables_names_the_first_unset_one(tmp_config: MakeConfig) -> None:
    path = tmp_config(DESIGN_ROUTE)
    assert error_of(path, env={"SMTP_PASSWORD": "hunter2"}) == (
        f"{path}: routes.email.send.options.username (line 4): "
        f"expected SMTP_USER set in the environment (or a default: ${{SMTP_USER:-...}}), got SMTP_USER unset")


WORKER_BLOCK = """
    worker:
      concurrency: ${N:-64}
      heartbeat: ${HB:-2s}
      queues:
        - ${Q1:-mail}
        - '${Q2}'
        - ${Q3:-bulk}
"""
WORKER_FLOW = "worker: {concurrency: ${N:-64}, heartbeat: ${HB:-2s}, queues: [${Q1:-mail}, '${Q2}', ${Q3:-bulk}]}"


@pytest.mark.parametrize("text", [WORKER_BLOCK, WORKER_FLOW], ids=["block", "flow"])
def test_references_read_the_same_in_block_and_flow_style(tmp_config: MakeConfig, text: str) -> None:
    worker = load(tmp_config, text, env={"Q2": "default", "HB": "3s"}).worker
    assert (worker.concurrency, worker.heartbeat, worker.queues) == (64, 3.0, ("mail", "default", "bulk"))


OPTIONS_BLOCK = """
    routes:
      x:
        handler: m:f
        options:
          a:
            - ${A}
            - '${B:-2}'
          b: ${A}${B:-2}
          c: 'it''s ${A}'
          d: "${A}\\t"
          e: |-
            ${A}
"""
OPTIONS_FLOW = """routes: {x: {handler: m:f, options: {a: [${A}, '${B:-2}'], b: ${A}${B:-2}, c: 'it''s ${A}',
                  d: "${A}\\t", e: "${A}"}}}"""


@pytest.mark.parametrize("text", [OPTIONS_BLOCK, OPTIONS_FLOW], ids=["block", "flow"])
def test_a_quoted_reference_stays_a_string_and_a_plain_one_is_typed_in_either_style(
        tmp_config: MakeConfig, text: str) -> None:
    options = load(tmp_config, text, env={"A": "1"}).routes["x"].options
    assert dict(options) == {"a": [1, "2"], "b": 12, "c": "it's 1", "d": "1\t", "e": "1"}


def test_a_quoted_reference_in_a_flow_mapping_is_not_typed(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {concurrency: \"${N:-5}\", processes: ${P:-2}}")
    assert error_of(path) == f"{path}: worker.concurrency (line 1): expected an integer >= 1, got '5'"


@pytest.mark.parametrize("default", ["x, y", "a: b", "[1]", "{x", "#1"])
def test_a_default_holding_yaml_punctuation_is_kept_whole_in_a_flow_mapping(tmp_config: MakeConfig,
                                                                           default: str) -> None:
    config = load(tmp_config, f"routes: {{x: {{handler: m:f, options: {{a: ${{A:-{default}}}}}}}}}")
    assert config.routes["x"].options["a"] == default


def test_a_reference_in_a_comment_is_ignored(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, """
        # ${UNSET} in a comment is not a reference, nor is ${ALSO:-a: b, {c}
        worker: {concurrency: 3}   # ${UNSET}
        logging: {level: ${LEVEL:-debug}}  # ${UNSET:- #}
    """)
    assert (config.worker.concurrency, config.logging.level) == (3, "debug")


def test_text_that_looks_like_a_placeholder_is_kept_as_written(tmp_config: MakeConfig,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The first marker drawn is in the file: the loader must draw another.
    draws = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr("geoq.config.loader.secrets.token_hex", lambda n: next(draws))
    written = "geoq0000000000000000x0_"
    text = f"routes: {{x: {{handler: m:f, options: {{a: ${{A:-a}}, b: {written}, c: '{written}'}}}}}}"
    config = load(tmp_config, text)
    assert dict(config.routes["x"].options) == {"a": "a", "b": written, "c": written}


def test_a_reference_error_in_a_flow_mapping_names_its_line(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  concurrency: 5\nroutes:\n  x: {handler: m:f,\n"
                      "      options: {user: ${U}, password: ${P}}}\n")
    assert error_of(path, env={"U": "me"}) == (
        f"{path}: routes.x.options.password (line 5): "
        f"expected P set in the environment (or a default: ${{P:-...}}), got P unset")


def test_a_secret_next_to_a_flow_reference_is_never_echoed(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis: {url: ${U:-redis://localhost}, password: '${P:-hunter2}${'}")
    message = error_of(path)
    assert message == f"{path}: redis.password (line 1): expected ${{VAR}} or ${{VAR:-default}}, got <hidden>"


def test_a_yaml_error_after_a_flow_reference_names_its_line_and_no_placeholder(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {concurrency: ${N:-5}}\nlogging: {level: ${L:-info}\nmetrics: [}\n")
    message = error_of(path)
    assert message.startswith(f"{path}: line 3: YAML syntax error: ")
    assert "geoq" not in message.partition("YAML syntax error")[2]


def test_an_alias_to_a_reference_is_an_error_naming_the_reference(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {concurrency: *${N}}\n")
    assert error_of(path) == f"{path}: line 1: YAML syntax error: found undefined alias '${{N}}'"


def test_the_environment_is_read_when_loading_not_before(tmp_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_config("worker:\n  concurrency: ${GEOQ_TEST_CONCURRENCY}\n")
    monkeypatch.setenv("GEOQ_TEST_CONCURRENCY", "33")
    assert load_config(path).worker.concurrency == 33


def test_empty_credentials_mean_none(tmp_config: MakeConfig) -> None:
    redis = load(tmp_config, 'redis: {username: "", password: ""}').redis
    assert redis.username is None and redis.password is None


def test_a_yaml_boolean_is_a_boolean(tmp_config: MakeConfig) -> None:
    redis = load(tmp_config, "redis: {cluster: yes, tls: {check_hostname: false}}").redis
    assert redis.cluster is True and redis.tls.check_hostname is False


def test_readable_tls_files_load_and_empty_means_not_set(tmp_config: MakeConfig, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("CA")
    (tmp_path / "client.pem").write_text("CERT AND KEY")  # a key inside the certificate file: no key_file
    tls = load(tmp_config, f"""
        redis:
          tls:
            ca_file: {tmp_path / "ca.pem"}
            cert_file: ${{CERT:-{tmp_path / "client.pem"}}}
            key_file: ${{KEY:-}}
    """).redis.tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"), "")


@pytest.mark.timeout(10)
def test_a_named_pipe_as_a_tls_file_does_not_block_the_loader(tmp_config: MakeConfig, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ca.fifo")  # no writer: a blocking open would wait for one forever
    assert load(tmp_config, f"redis: {{tls: {{ca_file: '{tmp_path / 'ca.fifo'}'}}}}").redis.tls.ca_file.endswith("fifo")


@pytest.mark.parametrize("name", ["ca_file", "cert_file", "key_file"])
def test_a_missing_tls_file_is_an_error_naming_key_line_and_file(tmp_config: MakeConfig, tmp_path: Path,
                                                                  name: str) -> None:
    missing = tmp_path / "nope.pem"
    path = tmp_config(f"redis:\n  url: rediss://redis.internal:6380/0\n  tls:\n    {name}: {missing}\n")
    assert error_of(path) == (f"{path}: redis.tls.{name} (line 4): "
                              f"expected a readable file, got '{missing}' (No such file or directory)")


def test_a_directory_is_not_a_readable_tls_file(tmp_config: MakeConfig, tmp_path: Path) -> None:
    path = tmp_config(f"redis: {{tls: {{ca_file: '{tmp_path}'}}}}")
    assert error_of(path) == (f"{path}: redis.tls.ca_file (line 1): "
                              f"expected a readable file, got '{tmp_path}' (Is a directory)")


def test_a_tls_file_from_the_environment_is_checked_after_substitution(tmp_config: MakeConfig, tmp_path: Path) -> None:
    path = tmp_config("redis:\n  tls: {cert_file: '${CERT}', key_file: ${KEY}}\n")
    (tmp_path / "client.pem").write_text("CERT")
    message = error_of(path, env={"CERT": str(tmp_path / "client.pem"), "KEY": "/no/such/client.key"})
    assert message == (f"{path}: redis.tls.key_file (line 2): "
                       f"expected a readable file, got '/no/such/client.key' (No such file or directory)")


def test_a_tls_key_file_without_its_cert_file_is_an_error(tmp_config: MakeConfig, tmp_path: Path) -> None:
    (tmp_path / "client.key").write_text("KEY")
    path = tmp_config(f"redis:\n  tls:\n    key_file: {tmp_path / 'client.key'}\n")
    assert error_of(path).startswith(f"{path}: redis.tls.key_file (line 3): expected a cert_file for this key_file")


@pytest.mark.parametrize("listen, host, port", [
    ("off", "", 0), ('""', "", 0), ("127.0.0.1:9200", "127.0.0.1", 9200), ("':9300'", "0.0.0.0", 9300),
    ('"[::1]:9108"', "::1", 9108),
])
def test_metrics_listen_gives_host_and_port_or_none(tmp_config: MakeConfig, listen: str, host: str, port: int) -> None:
    metrics = load(tmp_config, f"metrics: {{listen: {listen}}}").metrics
    assert (metrics.host, metrics.port, metrics.enabled) == (host, port, host != "")


@pytest.mark.parametrize("url", [
    "redis://localhost", "rediss://user:pw@redis.example.com:6380/2", "unix:///run/redis.sock?db=3",
    "redis+sentinel://s1:26379,s2:26379/mymaster/0", "redis+cluster://n1:7000,n2:7001", "redis://[::1]:6379/0",
])
def test_every_supported_redis_url_scheme_loads(tmp_config: MakeConfig, url: str) -> None:
    assert load(tmp_config, f"redis: {{url: '{url}'}}").redis.url == url


def test_the_loader_checks_a_handler_form_without_importing_it(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, "routes: {x: {handler: geoq_no_such_package.jobs:run}}")
    assert config.routes["x"].handler == "geoq_no_such_package.jobs:run"
    assert "geoq_no_such_package" not in sys.modules


def test_config_objects_are_frozen_and_options_read_only(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, "routes: {x: {handler: m:f, options: {a: 1}}}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.worker.concurrency = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.routes["x"].options["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        config.routes["y"] = config.routes["x"]  # type: ignore[index]


def test_a_redis_password_never_appears_in_the_repr(tmp_config: MakeConfig) -> None:
    assert "hunter2" not in repr(load(tmp_config, "redis: {password: hunter2}"))


# --- bad files: one line naming the file, the key and the line ---------------------------


def test_a_missing_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: cannot read config: No such file or directory"


def test_a_yaml_syntax_error_names_its_line(tmp_config: MakeConfig) -> None:
    path = tmp_config("""
        worker:
          concurrency: 10
          queues: [a, b
        logging: {}
    """)
    message = error_of(path)
    assert message.startswith(f"{path}: line 4: YAML syntax error: ")


def test_a_tab_indent_is_a_yaml_syntax_error_on_its_line(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n\tconcurrency: 10\n")
    assert error_of(path).startswith(f"{path}: line 2: YAML syntax error: ")


def test_an_unknown_top_level_key_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis: {}\nwrker:\n  concurrency: 5\n")
    assert error_of(path) == (f"{path}: wrker (line 2): expected one of redis, worker, dead, logging, metrics, "
                              f"results, history, middleware, routes, schedules, dashboard, got an unknown key (did you mean worker?)")


def test_an_unknown_key_inside_a_route_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("""
        routes:
          email.send:
            handler: geoq.handlers.smtp:send
            timout: 30s
    """)
    message = error_of(path)
    assert message.startswith(f"{path}: routes.email.send.timout (line 4): expected one of handler, queue, timeout,")
    assert message.endswith("got an unknown key (did you mean timeout?)")


def test_an_unknown_key_deep_in_a_section_names_its_whole_path(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis:\n  tls:\n    ca: /etc/ca.pem\n")
    assert error_of(path).startswith(f"{path}: redis.tls.ca (line 3): expected one of ca_file, cert_file,")


def test_a_key_given_twice_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  concurrency: 5\n  concurrency: 6\n")
    assert error_of(path) == f"{path}: worker.concurrency (line 3): expected each key once, got it again"


def test_a_string_where_an_integer_belongs_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config('worker:\n  concurrency: "500"\n')
    assert error_of(path) == f"{path}: worker.concurrency (line 2): expected an integer >= 1, got '500'"


def test_a_boolean_is_not_an_integer(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {fetch_batch: true}")
    assert error_of(path) == f"{path}: worker.fetch_batch (line 1): expected an integer >= 1, got true"


def test_a_yes_string_is_not_a_boolean(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis:\n  cluster: 'yes'\n")
    assert error_of(path) == f"{path}: redis.cluster (line 2): expected true or false, got 'yes'"


def test_a_section_that_is_not_a_mapping_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: [a, b]\n")
    assert error_of(path) == f"{path}: worker (line 1): expected a mapping, got a list"


def test_a_bad_duration_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  heartbeat: 5 parsecs\n")
    assert error_of(path) == (f"{path}: worker.heartbeat (line 2): "
                              f"expected a duration > 0 such as 500ms, 30s, 5m, got '5 parsecs'")


def test_a_route_timeout_of_zero_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("routes:\n  x:\n    handler: m:f\n    timeout: 0\n")
    assert error_of(path).startswith(f"{path}: routes.x.timeout (line 4): expected a duration > 0")


def test_negative_max_retries_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("routes: {x: {handler: m:f, max_retries: -1}}")
    assert error_of(path) == f"{path}: routes.x.max_retries (line 1): expected an integer >= 0, got -1"


def test_a_payload_limit_under_1kb_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {max_payload: 100b}")
    assert error_of(path).startswith(f"{path}: worker.max_payload (line 1): expected a size >= 1kb")


@pytest.mark.parametrize("handler", ["myapp.jobs.build_report", "myapp.jobs:", ":run", "my-app.jobs:run", "a:b:c"])
def test_a_handler_not_of_the_form_module_attr_is_an_error(tmp_config: MakeConfig, handler: str) -> None:
    path = tmp_config(f"routes:\n  report.build:\n    handler: '{handler}'\n")
    assert error_of(path) == (f"{path}: routes.report.build.handler (line 3): "
                              f"expected a handler of the form pkg.module:attr, got {handler!r}")


def test_a_route_without_a_handler_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("routes:\n  report.build:\n    queue: bulk\n")
    assert error_of(path) == (f"{path}: routes.report.build.handler (line 2): "
                              f"expected a value: this key is required, got nothing")


def test_middleware_entries_load_in_order_with_their_options(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, "middleware:\n  - app.hooks:Audit\n  - handler: app.hooks:Sentry\n"
                              "    options: {dsn: x}\n")
    assert [(m.handler, dict(m.options)) for m in config.middleware] == [
        ("app.hooks:Audit", {}), ("app.hooks:Sentry", {"dsn": "x"})]


@pytest.mark.parametrize("entry, got", [
    ("[app.hooks:Audit, 7]", "entry 1: a value of type int"),
    ("[just_a_name]", "entry 0: 'just_a_name'"),
    ("[{handler: [a]}]", "entry 0's handler: a value of type list"),
    ("[{handler: 'a:B', options: hunter2}]", "entry 0's options: a value of type str"),
])
def test_a_bad_middleware_entry_is_named_by_its_place_in_the_list(tmp_config: MakeConfig, entry: str,
                                                                   got: str) -> None:
    message = error_of(tmp_config(f"middleware: {entry}\n"))
    assert ": middleware (line 1): expected a " in message and message.endswith(f", got {got}")
    assert "hunter2" not in message   # options are never shown: they may hold secrets


def test_a_redis_url_with_an_unknown_scheme_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis:\n  url: http://localhost:6379/0\n")
    assert error_of(path) == (f"{path}: redis.url (line 2): expected a Redis URL with scheme redis, rediss, "
                              f"redis+sentinel, redis+cluster, unix, got 'http://localhost:6379/0'")


@pytest.mark.parametrize("url, expected", [
    ("redis://:6379/0", "a host"), ("redis://localhost:port/0", "a port number"),
    ("redis://localhost:6379/zero", "a database number"), ("redis://a:1,b:2/0", "one host"),
    ("unix://", "a socket path"), ("redis+sentinel://s1:26379", "redis+sentinel://"),
])
def test_a_redis_url_without_a_host_port_or_db_is_an_error(tmp_config: MakeConfig, url: str, expected: str) -> None:
    path = tmp_config(f"redis: {{url: '{url}'}}")
    assert error_of(path).startswith(f"{path}: redis.url (line 1): expected {expected}")


def test_a_bad_redis_url_does_not_show_its_password(tmp_config: MakeConfig) -> None:
    message = error_of(tmp_config("redis: {url: 'http://app:hunter2@localhost/0'}"))
    assert "hunter2" not in message and "got 'http://app:***@localhost/0'" in message


def test_zero_concurrency_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  concurrency: 0\n")
    assert error_of(path) == f"{path}: worker.concurrency (line 2): expected an integer >= 1, got 0"


def test_an_unset_variable_without_a_default_is_an_error_naming_it(tmp_config: MakeConfig) -> None:
    path = tmp_config("routes:\n  mail:\n    handler: m:f\n    options: {username: '${SMTP_USER}'}\n")
    assert error_of(path) == (f"{path}: routes.mail.options.username (line 4): "
                              f"expected SMTP_USER set in the environment (or a default: ${{SMTP_USER:-...}}), "
                              f"got SMTP_USER unset")


def test_a_malformed_variable_reference_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis: {url: 'redis://${HOST:localhost}/0'}")
    assert error_of(path).startswith(f"{path}: redis.url (line 1): expected ${{VAR}} or ${{VAR:-default}}, got ")


def test_a_quoted_number_from_the_environment_stays_a_string(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker: {concurrency: '${N:-5}'}")
    assert error_of(path) == f"{path}: worker.concurrency (line 1): expected an integer >= 1, got '5'"


def test_a_heartbeat_not_shorter_than_dead_after_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  dead_after: 10s\n  heartbeat: 10s\n")
    assert error_of(path) == (f"{path}: worker.heartbeat (line 3): "
                              f"expected a duration shorter than dead_after (10s), got 10s")


def test_dead_after_below_the_default_heartbeat_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  dead_after: 3s\n")
    assert error_of(path) == (f"{path}: worker.heartbeat (line 1): "
                              f"expected a duration shorter than dead_after (3s), got 5s")


def test_a_backoff_max_below_its_base_is_an_error(tmp_config: MakeConfig) -> None:
    path = tmp_config("routes: {x: {handler: m:f, backoff: {base: 10s, max: 5s}}}")
    assert error_of(path) == f"{path}: routes.x.backoff.max (line 1): expected a duration >= base (10s), got 5s"


@pytest.mark.parametrize("queues, expected", [
    ("[]", "a non-empty list of distinct queue names"), ("[a, a]", "a non-empty list of distinct queue names"),
    ("{a: 0}", "a positive number as the weight of queue 'a'"), ("{a: 'x'}", "a positive number"),
    ("['{a}']", "a queue name of 1-100 characters"), ("7", "a list of queue names or a mapping"),
])
def test_bad_queues_are_an_error(tmp_config: MakeConfig, queues: str, expected: str) -> None:
    path = tmp_config(f"worker:\n  queues: {queues}\n")
    assert error_of(path).startswith(f"{path}: worker.queues (line 2): expected {expected}")


@pytest.mark.parametrize("text, path_and_line", [
    ("logging: {format: xml}", "logging.format (line 1): expected one of plain, json"),
    ("logging: {level: loud}", "logging.level (line 1): expected one of debug, info, warning, error, critical"),
    ("metrics: {listen: 'localhost'}", "metrics.listen (line 1): expected an address host:port, or off"),
    ("routes: {x: {handler: m:f, backoff: {jitter: half}}}", "routes.x.backoff.jitter (line 1): expected one of full, none"),
    ("routes: {x: {handler: m:f, queue: 'my queue'}}", "routes.x.queue (line 1): expected a queue name"),
    ("redis: {cluster: true, url: 'unix:///tmp/r.sock'}", "redis.cluster (line 1): expected false with a unix://"),
    ("worker: {processes: 0}", "worker.processes (line 1): expected an integer >= 1, got 0"),
    ("worker: {fetch_batch: 0}", "worker.fetch_batch (line 1): expected an integer >= 1, got 0"),
    ("worker: {block_timeout: 0}", "worker.block_timeout (line 1): expected a duration > 0"),
    ("- a\n- b\n", "top level (line 1): expected a mapping, got a list"),
])
def test_other_bad_values_are_errors_naming_key_and_line(tmp_config: MakeConfig, text: str, path_and_line: str) -> None:
    path = tmp_config(text)
    assert error_of(path).startswith(f"{path}: {path_and_line}")


@pytest.mark.parametrize("text", [
    "redis:\n  password: [hunter2, x]\n",
    "redis:\n  password: 'hunter2${'\n",
    "routes: {x: {handler: m:f, options: {api_token: 'hunter2${API_TOKEN'}}}",
    "routes: {x: {handler: m:f, options: {auth: {client_secret: 'hunter2${X'}}}}",
])
def test_a_secret_value_is_never_echoed(tmp_config: MakeConfig, text: str) -> None:
    message = error_of(tmp_config(text))
    assert message.endswith("got <hidden>") and "hunter2" not in message


def test_a_password_of_the_wrong_type_says_hidden(tmp_config: MakeConfig) -> None:
    path = tmp_config("redis:\n  password: 12345\n")
    assert error_of(path) == f"{path}: redis.password (line 2): expected a string, got <hidden>"


def test_the_key_table_lists_each_key_once_with_a_doc() -> None:
    paths = [key.path for key in KEYS]
    assert len(paths) == len(set(paths))
    assert all(key.doc and "\n" not in key.doc for key in KEYS)
    assert {"redis.url", "worker.block_timeout", "routes.<type>.handler", "routes.<type>.backoff.jitter"} <= set(paths)


@pytest.mark.parametrize("text, message", [
    ("a: 1\n---\nb: 2\n", "line 2: YAML syntax error: expected a single document in the stream, but found another"),
    ("routes:\n  x:\n    handler: m:f\n    options: &o [*o]\n", "line 1: YAML syntax error: recursive or too deeply"),
    ("worker: !!python/object:os.system {}\n", "worker (line 1): expected a plain YAML mapping, got the tag"),
    ("worker:\n  concurrency: !big 5\n", "worker.concurrency (line 2): expected a plain YAML value, got the tag !big"),
    ("worker:\n  concurrency: !!int abc\n",
     "worker.concurrency (line 2): expected a plain YAML value, got the tag tag:yaml.org,2002:int"),
    ("base: &b {concurrency: 5}\nworker:\n  <<: *b\n", "base (line 1): expected one of redis, worker,"),
    ("\0", "line 1: YAML syntax error: character #x0000 is not allowed"),
])
def test_yaml_that_is_not_plain_data_is_an_error(tmp_config: MakeConfig, text: str, message: str) -> None:
    path = tmp_config(text)
    assert error_of(path).startswith(f"{path}: {message}")


def test_a_yaml_merge_key_is_not_a_config_key(tmp_config: MakeConfig) -> None:
    path = tmp_config("worker:\n  <<: {concurrency: 5}\n")
    assert error_of(path).startswith(f"{path}: worker (line 2): expected a string key, got << (YAML merge keys are not supported)")


PRODUCER_FILE = """
redis:
  url: ${REDIS_URL:-redis://127.0.0.1:6379/0}
routes:
  mail.send:
    handler: geoq.handlers.smtp:send
    queue: mail
    options: {host: smtp.example.com, username: ${SMTP_USER}, password: ${SMTP_PASSWORD}}
"""


def test_a_producer_loads_the_workers_file_without_the_workers_secrets(tmp_config):
    path = tmp_config(PRODUCER_FILE)
    with pytest.raises(ConfigError, match=r"routes\.mail\.send\.options\.username .*SMTP_USER unset"):
        load_config(path, env={})
    config = load_config(path, env={"SMTP_USER": "u"}, producer=True)
    assert config.routes["mail.send"].queue == "mail"
    assert dict(config.routes["mail.send"].options) == {
        "host": "smtp.example.com", "username": "u", "password": "${SMTP_PASSWORD}"}


def test_a_producer_still_needs_what_it_uses_itself(tmp_config):
    path = tmp_config("redis:\n  url: ${REDIS_URL}\n")
    with pytest.raises(ConfigError, match=r"redis\.url .*REDIS_URL unset"):
        load_config(path, env={}, producer=True)


def test_a_worker_shares_max_connections_among_its_pools_and_needs_queues_plus_six_plus_two_for_metrics() -> None:
    config = default_config()  # queues: default; metrics on; max_connections 200
    split = connection_split(config)
    assert (split.fetch, split.heartbeat, split.metrics, split.main) == (2, 1, 2, 195)
    assert split.total == config.redis.max_connections
    three = dataclasses.replace(config, worker=dataclasses.replace(config.worker, queues=("a", "b", "c")))
    assert least_connections(three) == 3 + 6 + 2
    quiet = dataclasses.replace(three, metrics=dataclasses.replace(three.metrics, host="", port=0))
    assert least_connections(quiet) == 3 + 6 and connection_split(quiet).metrics == 0


def test_history_keeps_a_week_flushed_every_five_seconds_unless_told(tmp_config: MakeConfig) -> None:
    assert (load(tmp_config, "").history.keep, load(tmp_config, "").history.flush_every) == (7 * 86400.0, 5.0)
    config = load(tmp_config, "history: {keep: 2d, flush_every: 500ms}")
    assert (config.history.keep, config.history.flush_every) == (2 * 86400.0, 0.5)


@pytest.mark.parametrize("text, path_and_line", [
    ("history: {keep: 0}", "history.keep (line 1): expected a duration > 0 and <= 3.16224e+07s such as 500ms"),
    ("history: {keep: forever}", "history.keep (line 1): expected a duration > 0"),
    ("history: {flush_every: 2m}", "history.flush_every (line 1): expected a duration > 0 and <= 60s such as 500ms"),
    ("history: {flush_every: -1s}", "history.flush_every (line 1): expected a duration > 0"),
    ("history: {kept: 1d}", "history.kept (line 1): expected one of keep, flush_every, got an unknown key"),
])
def test_bad_history_values_are_one_line_errors_naming_key_and_line(tmp_config: MakeConfig, text: str,
                                                                    path_and_line: str) -> None:
    path = tmp_config(text)
    assert error_of(path).startswith(f"{path}: {path_and_line}")
