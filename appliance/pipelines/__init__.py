"""The loop's multi-step operations: train-and-register, gate-and-request, deploy.

These reach Ray through `cluster`, always by deferred imports, so the core stays Ray-free.
"""
