"""Serving on Ray Serve: OIP v2 over HTTP, bearer tokens, every request logged to Parquet.

deploy(cfg, *, model, version, bundle_path, deployment, token_hashes) -> base URL
undeploy(cfg, model)
hash_token(token) -> sha256 hex, the form in which `deploy` takes tokens
serve_url(cfg) -> base URL of the HTTP endpoint
"""

from cluster.serve._app import DeployFailed, deploy, hash_token, serve_url, undeploy

__all__ = ["DeployFailed", "deploy", "hash_token", "serve_url", "undeploy"]
