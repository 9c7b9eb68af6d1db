"""Where the appliance keeps its state, and how to override it.

Precedence, lowest first: built-in defaults (everything under ``~/.appliance``), the file
``appliance.toml`` (``$APPLIANCE_HOME/appliance.toml``, or the path in ``APPLIANCE_CONFIG``),
then the environment (``APPLIANCE_HOME``, ``APPLIANCE_DB_URL``, ``APPLIANCE_ARTIFACTS``,
``RAY_ADDRESS``, ``APPLIANCE_REQUIRE_TOKEN_FOR_READS``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import tomllib

from appliance.errors import InvalidInput
from appliance.monitor.policy import build, parse_settings
from appliance.monitor.rules import DEFAULT_RULES, AlertRule, parse_rules
from appliance.ray_settings import RaySettings, parse_ray_settings
from appliance.serving import ServingOptions, parse_serving

_KEYS = {
    "db_url", "artifacts", "ray_address", "ray_num_cpus", "serve_port", "serve_host",
    "alert_webhook", "policy", "alert_rules", "serving", "serve_max_body_bytes",
    "serve_ingress_replicas", "serve_grpc_port", "ray", "require_token_for_reads",
    "audit_key_file", "audit_checkpoints", "audit_syslog", "audit_webhook",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Resolved settings.

    Args:
        home: the appliance's folder (default ``~/.appliance``).
        db_url: SQLAlchemy URL of the metadata store (default SQLite at ``home/appliance.db``).
        artifacts: folder of the content-addressed artifact store (default ``home/artifacts``).
        ray_address: address of an existing Ray cluster, or None to start a local one.
        ray_num_cpus: CPUs a locally started Ray may use (default: all).
        serve_host: interface Ray Serve's HTTP proxy binds (default loopback).
        serve_port: port of Ray Serve's HTTP proxy (default 8000).
        alert_webhook: URL that receives each alert as JSON (default none: log file only).
        policy: validated ``[policy]`` defaults for every model's monitoring policy (see
            `appliance.monitor.policy`; default none: the built-in defaults).
        alert_rules: the validated ``[[alert_rules]]`` (default: `rules.DEFAULT_RULES`).
        serving: every model's serving options, from ``[serving]`` (see `appliance.serving`;
            a deploy's own spec overrides them).
        serve_max_body_bytes: the largest request body the endpoint accepts (default 32 MiB).
        serve_ingress_replicas: replicas of the authenticating front door (default 1).
        serve_grpc_port: port of the KServe v2 gRPC endpoint (default 8001, as Triton's;
            0 turns gRPC off).
        ray: the ``[ray]`` table: what of Ray is reachable (see `appliance.ray_settings`;
            default: an embedded Ray on loopback, no client server, no dashboard).
        require_token_for_reads: read commands need a token whose user holds "read" (default:
            True on a cluster, i.e. a non-SQLite store or a ``ray_address``; False for the
            embedded appliance, where a read without any token is still allowed).
        audit_key_file: the audit chain's HMAC key, mode 0600 (default ``home/audit.key``,
            created on first use; ``APPLIANCE_AUDIT_KEY_FILE``).
        audit_checkpoints: the append-only JSONL file of audit checkpoints (default
            ``home/audit-checkpoints.jsonl``; ``APPLIANCE_AUDIT_CHECKPOINTS``).
        audit_syslog: also send each checkpoint to the local syslog (default off).
        audit_webhook: also POST each checkpoint to this URL (default none).
    """

    home: Path
    db_url: str
    artifacts: Path
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    alert_webhook: str | None = None
    policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    alert_rules: tuple[AlertRule, ...] = DEFAULT_RULES
    serving: ServingOptions = ServingOptions()
    serve_max_body_bytes: int = 32 * 1024 * 1024
    serve_ingress_replicas: int = 1
    serve_grpc_port: int = 8001
    ray: RaySettings = RaySettings()
    require_token_for_reads: bool = False
    audit_key_file: Path | None = None
    audit_checkpoints: Path | None = None
    audit_syslog: bool = False
    audit_webhook: str | None = None

    @property
    def predictions_dir(self) -> Path:
        return self.artifacts / "predictions"

    @property
    def feedback_dir(self) -> Path:
        return self.artifacts / "feedback"

    @property
    def alerts_log(self) -> Path:
        return self.home / "alerts.log"


def _policy(doc: object, where: str) -> dict[str, Any]:
    settings = parse_settings(doc, where)
    try:
        build(settings)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    return settings


def load_config(env: dict[str, str] | None = None) -> Config:
    """Resolve settings from defaults, ``appliance.toml`` and `env` (default: os.environ)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("APPLIANCE_HOME") or Path.home() / ".appliance").expanduser()
    file_path = Path(env.get("APPLIANCE_CONFIG") or home / "appliance.toml")
    values: dict[str, object] = {}
    if file_path.is_file():
        try:
            values = tomllib.loads(file_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"config file {str(file_path)!r} is not valid TOML: {exc}") from exc
        unknown = set(values) - _KEYS
        if unknown:
            raise InvalidInput(
                f"config file {str(file_path)!r} has unknown key(s) {sorted(unknown)}; "
                f"known keys: {sorted(_KEYS)}"
            )
    default_db = f"sqlite:///{home / 'appliance.db'}"
    db_url = env.get("APPLIANCE_DB_URL") or values.get("db_url") or default_db
    artifacts = Path(
        str(env.get("APPLIANCE_ARTIFACTS") or values.get("artifacts") or home / "artifacts")
    )
    ray_address = env.get("RAY_ADDRESS") or values.get("ray_address") or None
    num_cpus = values.get("ray_num_cpus")
    port = env.get("APPLIANCE_SERVE_PORT") or values.get("serve_port") or 8000
    try:
        port = int(port)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"serve_port must be an integer, got {port!r}") from exc
    return Config(
        home=home,
        db_url=str(db_url),
        artifacts=artifacts.expanduser(),
        ray_address=str(ray_address) if ray_address else None,
        ray_num_cpus=int(num_cpus) if num_cpus is not None else None,
        serve_host=str(values.get("serve_host") or "127.0.0.1"),
        serve_port=port,
        alert_webhook=env.get("APPLIANCE_ALERT_WEBHOOK") or values.get("alert_webhook") or None,
        policy=_policy(values.get("policy", {}), f"config file {str(file_path)!r} [policy]"),
        alert_rules=parse_rules(values.get("alert_rules"),
                                f"config file {str(file_path)!r} alert_rules"),
        serving=parse_serving(values.get("serving"), f"config file {str(file_path)!r} [serving]"),
        serve_max_body_bytes=_positive_int(values, "serve_max_body_bytes", 32 * 1024 * 1024,
                                           file_path),
        serve_ingress_replicas=_positive_int(values, "serve_ingress_replicas", 1, file_path),
        serve_grpc_port=_port(env.get("APPLIANCE_SERVE_GRPC_PORT"),
                              values.get("serve_grpc_port", 8001), file_path),
        ray=parse_ray_settings(values.get("ray"), f"config file {str(file_path)!r} [ray]"),
        require_token_for_reads=_reads_need_token(
            env.get("APPLIANCE_REQUIRE_TOKEN_FOR_READS"), values.get("require_token_for_reads"),
            cluster=not str(db_url).startswith("sqlite") or bool(ray_address),
            file_path=file_path),
        **_audit(env, values, file_path),
    )


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _reads_need_token(from_env: str | None, value: object, *, cluster: bool,
                      file_path: Path) -> bool:
    # A cluster's store is shared by many people, so reads are least-privilege there too;
    # the embedded appliance keeps reads open to whoever can open its SQLite file anyway.
    if from_env is not None and from_env.strip():
        text = from_env.strip().lower()
        if text not in _TRUE + _FALSE:
            raise InvalidInput(f"APPLIANCE_REQUIRE_TOKEN_FOR_READS must be true or false, "
                               f"got {from_env!r}")
        return text in _TRUE
    if value is None:
        return cluster
    if not isinstance(value, bool):
        raise InvalidInput(f"config file {str(file_path)!r}: require_token_for_reads must be "
                           f"true or false, got {value!r}")
    return value


def _audit(env: dict[str, str], values: dict, file_path: Path) -> dict[str, Any]:
    # The audit key and checkpoint sink: paths from the environment win over the file.
    paths = {}
    for key in ("audit_key_file", "audit_checkpoints"):
        value = env.get(f"APPLIANCE_{key.upper()}") or values.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"config file {str(file_path)!r}: {key} must be a path, "
                               f"got {value!r}")
        paths[key] = Path(value).expanduser() if value else None
    syslog = values.get("audit_syslog", False)
    if not isinstance(syslog, bool):
        raise InvalidInput(f"config file {str(file_path)!r}: audit_syslog must be true or "
                           f"false, got {syslog!r}")
    webhook = values.get("audit_webhook")
    if webhook is not None and not str(webhook).startswith(("http://", "https://")):
        raise InvalidInput(f"config file {str(file_path)!r}: audit_webhook must be an http(s) "
                           f"URL, got {webhook!r}")
    return {**paths, "audit_syslog": syslog, "audit_webhook": webhook or None}


def _port(from_env: str | None, value: object, file_path: Path) -> int:
    if from_env is not None:
        value = from_env
    try:
        port = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        port = -1
    if isinstance(value, bool) or not 0 <= port <= 65535:
        raise InvalidInput(
            f"serve_grpc_port must be a port number (0 turns gRPC off), got {value!r} "
            f"(config file {str(file_path)!r} or APPLIANCE_SERVE_GRPC_PORT)"
        )
    return port


def _positive_int(values: dict, key: str, default: int, file_path: Path) -> int:
    value = values.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(
            f"config file {str(file_path)!r}: {key} must be a positive integer, got {value!r}"
        )
    return value
