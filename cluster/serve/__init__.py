"""Serving on Ray Serve: OIP v2 over HTTP (and gRPC), scoped bearer tokens, batched models,
every answered row logged before its answer (a journal per replica, published as Arrow IPC
files: `cluster.serve._log_buffer`).

deploy(cfg, *, model, version, bundle_path, deployment, serving=None) -> base URL
undeploy(cfg, model)                       also removes the model's canary
deploy_canary(cfg, *, model, version, bundle_path, deployment, serving=None,
              mode="split", share=0.1) -> base URL
remove_canary(cfg, model) -> bool          whether there was a canary; idempotent
canary_info(cfg, model) -> {"version", "mode", "share"} | None
serve_url(cfg) -> base URL of the HTTP endpoint

Each model's primary answers its route ``/v2/models/{model}`` itself, one hop from Serve's
proxy; a front ingress (route ``/``) answers health, the repository, gRPC and unknown models.
Who may call is decided at the door of whichever replica a request reaches, from the tokens in
the metadata store (``cfg.db_url``; `appliance.governance.serving_tokens`), refreshed about once
a second: no redeploy is needed when a token is issued, revoked or expires.
`serving` (`appliance.serving.ServingOptions`) sets batching, replicas or autoscaling, CPUs
and GPUs, the replica's Python environment and the prediction log's buffer.

A canary is a challenger version behind the same route, ``/v2/models/{model}``. In ``split``
mode it answers the requests whose id hashes below `share` (the same id always gets the same
version); in ``shadow`` mode the primary answers everything and the challenger scores a copy,
logged with ``shadow`` true. Every answer names the version that gave it (``model_version``
and the ``x-model-version`` header), and both versions log to
``predictions/{deployment}/pending``.

Promoting the challenger is two calls, made by the caller once the promotion is approved:

    deploy(cfg, model=m, version=challenger, bundle_path=..., deployment=d)
    remove_canary(cfg, m)

The first replaces the primary in place (requests wait for the new replica rather than fail)
while the canary keeps answering its share; the second stops routing to the canary, lets its
calls finish, then deletes it. No request is dropped on the way, and once `remove_canary`
returns every answer comes from the new primary.
"""

from cluster.serve._app import (
    DeployFailed,
    canary_info,
    deploy,
    deploy_canary,
    remove_canary,
    serve_url,
    undeploy,
)

__all__ = [
    "DeployFailed",
    "canary_info",
    "deploy",
    "deploy_canary",
    "remove_canary",
    "serve_url",
    "undeploy",
]
