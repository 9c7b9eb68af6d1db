"""What the serving tests share: the model, its bundle, requests, the prediction log folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch

from appliance.config import Config
from appliance.monitor import log_files
from appliance.ports import free_port
from cluster.bundle import ModelBundle, Preprocessor, build_mlp

MODEL = "credit"
DEPLOYMENT = "credit-prod"
# An operator's token (scopes infer and feedback), a viewer's (infer) and an admin's (all).
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIEWER_TOKEN = "viewer-token"
ADMIN_TOKEN = "admin-token"
# Not in sorted order on purpose: a bundle's byte round trip must keep the training order.
NUMERICAL = ["income", "age"]
CATEGORICAL = ["region"]


def columns(n: int, seed: int) -> dict[str, np.ndarray]:
    """`n` rows of the model's features, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return {
        "income": rng.normal(50.0, 10.0, n),
        "age": rng.normal(40.0, 12.0, n),
        "region": rng.choice(["north", "south", "east"], n).astype(object),
    }


def make_bundle() -> ModelBundle:
    """A small trained model over `columns` (deterministic)."""
    cols = columns(256, seed=0)
    pre = Preprocessor.fit(cols, CATEGORICAL)
    torch.manual_seed(0)
    module = build_mlp(pre.width, hidden=8, layers=1)
    # A few real optimisation steps so scores are not all ~0.5.
    x = torch.from_numpy(pre.transform(cols))
    y = torch.from_numpy((cols["income"] > 50.0).astype(np.float32))
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(module(x).squeeze(-1), y)
        loss.backward()
        opt.step()
    return ModelBundle(pre, module, hidden=8, layers=1, label="default")


def token_store(home: Path) -> str:
    """A migrated SQLite store under `home` holding the tokens above; returns its URL.

    The tokens are inserted with known secrets (issue_token makes random ones) and the token
    set's version is bumped, as issuing does.
    """
    from appliance.governance import serving_tokens
    from appliance.governance.users import create_user, hash_token
    from appliance.store import migrate, session_scope
    from appliance.store.models import ApiToken

    url = f"sqlite:///{home / 'appliance.db'}"
    migrate(url)
    with session_scope(url) as session:
        for user, role, secret in (("ops", "operator", TOKEN), ("app", "viewer", VIEWER_TOKEN),
                                   ("root", "admin", ADMIN_TOKEN)):
            row = create_user(session, user, role, actor="test")
            session.add(ApiToken(user_id=row.id, name="test", token_hash=hash_token(secret)))
        session.flush()
        serving_tokens.bump(session)
    return url


def serve_config(home: Path, **overrides) -> Config:
    """A configuration serving on a free port, its tokens in a store under `home`."""
    return Config(home=home, db_url=token_store(home), artifacts=home / "artifacts",
                  serve_port=free_port(), serve_grpc_port=free_port(), **overrides)


def infer_request(cols: dict[str, np.ndarray], request_id: str | None = None) -> dict:
    """An OIP v2 JSON inference request for `cols`, with `request_id` as its id when given."""
    doc = {
        "inputs": [
            {
                "name": name,
                "shape": [len(values)],
                "datatype": "BYTES" if name in CATEGORICAL else "FP64",
                "data": values.tolist(),
            }
            for name, values in cols.items()
        ]
    }
    if request_id is not None:
        doc["id"] = request_id
    return doc


def published(folder: Path) -> list[Path]:
    """The log files published in `folder`, sorted (open journal segments and writers'
    dot-named temporaries left out, as every reader does)."""
    return log_files.visible(folder)


def logged_tables(folder: Path, columns: list[str] | None = None) -> list[pa.Table]:
    """Every logged row in `folder`, one table per file: the published files, and each open
    journal segment up to its last whole message. A 200 promises that its rows are here (they
    outlive the replica's process; publishing them is the replica's, or recovery's, job).

    A segment published while this reads is counted once: open ones are listed first, and
    one that is published by the time it is read is read under its published name.
    """
    prefix = log_files.OPEN_PREFIX
    opened = sorted(folder.glob(f"{prefix}*")) if folder.is_dir() else []
    done = published(folder)
    tables = [log_files.read_log(p, columns) for p in done]
    names = {p.name for p in done}
    for path in opened:
        final = path.with_name(path.name[len(prefix):])
        if final.name in names:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # published since the listing
            tables.append(log_files.read_log(final, columns))
            continue
        end, batches = log_files.complete_prefix(data)
        if batches:
            table = ipc.open_stream(pa.py_buffer(data[:end])).read_all()
            tables.append(table.select(columns) if columns is not None else table)
    return tables


def logged_rows(folder: Path, columns: list[str]) -> list[dict]:
    """`columns` of every logged row in `folder` (see `logged_tables`), as dicts."""
    return [row for t in logged_tables(folder, columns) for row in t.to_pylist()]


def drain(model: str) -> int:
    """Have the model's primary replica publish its journal now; the rows still waiting."""
    from ray import serve

    return serve.get_app_handle(f"model-{model}").drain.remote().result(timeout_s=60)


def pending_dir(cfg: Config) -> Path:
    """The folder the model's served predictions are logged to."""
    return cfg.artifacts / "predictions" / DEPLOYMENT / "pending"
