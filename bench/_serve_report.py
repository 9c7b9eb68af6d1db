"""The serving bench's section of bench/RESULTS.md: its tables, its targets, and where it goes.

section(meta, plan, cells, parts, gpu, args) -> str     the Markdown between the markers
write_section(path, section)                            in place of the last one, or appended

The names of the bench's deployments and the issue's targets live here, with the text that
states them.
"""

from __future__ import annotations

import time
from pathlib import Path

from _sections import write_section as _write_between
from _serve_load import Cell

from appliance.serving import ServingOptions

START, END = "<!-- serve:start -->", "<!-- serve:end -->"
LOG, NOLOG, UNBATCHED, GPU = "bench-log", "bench-nolog", "bench-unbatched", "bench-gpu"
# appliance p50 <= 1.3x bare p50; req/s logging on >= 90% of off; 1,000-row rows/s >= 5x.
TARGET_LATENCY, TARGET_LOGGING, TARGET_BATCHING = 1.3, 0.90, 5.0


def _ratio_row(target: str, num: float, den: float, text: str, bound: float,
               at_most: bool) -> str:
    ratio = num / den if den else float("nan")
    ok = ratio <= bound if at_most else ratio >= bound
    return f"| {target} | {text} | {ratio:.2f}x | {'PASS' if ok else 'FAIL'} |"


def _targets(cells: dict[str, Cell], c: int, batch_rows: int) -> list[str]:
    bare1, log1, logc = cells["bare@1"], cells[f"{LOG}@1"], cells[f"{LOG}@{c}"]
    barec, nolog1, nologc = cells[f"bare@{c}"], cells[f"{NOLOG}@1"], cells[f"{NOLOG}@{c}"]
    big, unb = cells[f"{LOG}-rows@{c}"], cells[f"{UNBATCHED}@{c}"]
    return [
        "| target | measured | ratio | result |",
        "|---|---|---:|---|",
        _ratio_row(f"appliance p50 <= {TARGET_LATENCY}x bare p50: 1 client, logging on",
                   log1.p50_ms, bare1.p50_ms,
                   f"{log1.p50_ms:.2f} vs {bare1.p50_ms:.2f} ms", TARGET_LATENCY, True),
        _ratio_row(f"(also) the same at {c} clients", logc.p50_ms, barec.p50_ms,
                   f"{logc.p50_ms:.2f} vs {barec.p50_ms:.2f} ms", TARGET_LATENCY, True),
        _ratio_row("(also) the same, 1 client, logging off", nolog1.p50_ms, bare1.p50_ms,
                   f"{nolog1.p50_ms:.2f} vs {bare1.p50_ms:.2f} ms", TARGET_LATENCY, True),
        _ratio_row(f"req/s with logging >= {TARGET_LOGGING:.0%} of without: {c} clients",
                   logc.rps, nologc.rps, f"{logc.rps:.0f} vs {nologc.rps:.0f} req/s",
                   TARGET_LOGGING, False),
        _ratio_row("(also) the same at 1 client", log1.rps, nolog1.rps,
                   f"{log1.rps:.0f} vs {nolog1.rps:.0f} req/s", TARGET_LOGGING, False),
        _ratio_row(f"{batch_rows:,}-row requests (batched) >= {TARGET_BATCHING:.0f}x the rows/s "
                   f"of unbatched single-row requests (`max_batch_size = 1`): {c} clients",
                   big.rows_per_s, unb.rows_per_s,
                   f"{big.rows_per_s:,.0f} vs {unb.rows_per_s:,.0f} rows/s", TARGET_BATCHING,
                   False),
        _ratio_row(f"(also) against batched single-row requests ({LOG}, {c} clients)",
                   big.rows_per_s, logc.rows_per_s,
                   f"{big.rows_per_s:,.0f} vs {logc.rows_per_s:,.0f} rows/s", TARGET_BATCHING,
                   False),
    ]


def _cell_rows(cells: dict[str, Cell], plan: list[dict]) -> list[str]:
    lines = ["| cell | clients | rows/req | requests | errors | p50 ms | p99 ms | req/s | rows/s "
             "| CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec in plan:
        cell = cells[spec["key"]]
        lines.append(f"| {spec['label']} | {cell.concurrency} | {cell.rows:,} | {cell.requests:,} "
                     f"| {cell.errors} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} | {cell.rps:,.0f} "
                     f"| {cell.rows_per_s:,.0f} | {cell.cpu_ms_per_request():.1f} |")
    return lines


def _cpu_rows(cells: dict[str, Cell], plan: list[dict]) -> list[str]:
    """CPU per answered request by process: where a CPU-bound run's throughput goes."""
    lines = ["| cell | clients | rows/req | all | HTTP proxy | ingress | the cell's replica "
             "| client (this process) | rest of Ray |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec in plan:
        cell = cells[spec["key"]]
        lines.append(
            f"| {spec['label']} | {cell.concurrency} | {cell.rows:,} "
            f"| {cell.cpu_ms_per_request():.1f} | {cell.cpu_ms_per_request('proxy'):.1f} "
            f"| {cell.cpu_ms_per_request('ingress'):.1f} "
            f"| {cell.cpu_ms_per_request(spec['replica']):.1f} "
            f"| {cell.cpu_ms_per_request('client'):.1f} | {cell.cpu_ms_per_request('rest'):.1f} |")
    return lines


def _breakdown_rows(parts: dict[str, Cell], body_bytes: int) -> list[str]:
    get, live, bare = parts["bare-get"], parts["live"], parts["bare"]
    nolog, log, unb = parts[NOLOG], parts[LOG], parts[UNBATCHED]
    h_nolog, h_log, local = parts[f"handle-{NOLOG}"], parts[f"handle-{LOG}"], parts["in-process"]
    rows = [
        ("bare `GET /bare`", get, "proxy, one hop to a plain replica; no body"),
        ("front ingress `GET /v2/health/live`", live, "proxy, one hop to the FastAPI ingress; "
         "no body, no auth, no model"),
        ("bare echo (POST)", bare, "proxy, one hop, the body read and sent back"),
        (f"appliance infer, {NOLOG}", nolog, "all of it but the log"),
        (f"appliance infer, {LOG}", log, "all of it"),
        (f"appliance infer, {UNBATCHED}", unb, "all of it, no batch wait"),
        (f"handle call from this process to {NOLOG}'s replica", h_nolog,
         "one handle hop; parse, batch wait, score, reply"),
        (f"handle call from this process to {LOG}'s replica", h_log,
         "the same + the logged append"),
        ("in-process parse + score + reply JSON", local, "the replica's work, without Ray"),
    ]
    lines = ["| probe | requests | errors | p50 ms | p99 ms | what it holds |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {name} | {cell.requests:,} | {cell.errors} | {cell.p50_ms:.2f} "
              f"| {cell.p99_ms:.2f} | {what} |" for name, cell, what in rows]
    lines += [
        "",
        f"Appliance p50 over bare p50 here: {log.p50_ms / bare.p50_ms:.2f}x with logging, "
        f"{nolog.p50_ms / bare.p50_ms:.2f}x without. Differences of medians (approximate: "
        "medians do not subtract exactly):",
        "",
        f"- the FastAPI ingress over a plain replica: live - bare GET = "
        f"{live.p50_ms - get.p50_ms:+.2f} ms;",
        f"- reading a {body_bytes:,}-byte body (the replica fetches it from the proxy): bare "
        f"echo - bare GET = {bare.p50_ms - get.p50_ms:+.2f} ms;",
        f"- what the appliance adds to the bare echo (auth, request id, routing, batching, the "
        f"model's work): {NOLOG} - bare echo = {nolog.p50_ms - bare.p50_ms:+.2f} ms; the model "
        f"replica called by handle from here takes {h_nolog.p50_ms:.2f} ms, its work alone "
        f"{local.p50_ms:.2f} ms;",
        f"- the batching machinery at one client: {LOG} - {UNBATCHED} = "
        f"{log.p50_ms - unb.p50_ms:+.2f} ms;",
        f"- logging (one write to the replica's journal per batch; fsync and publish every "
        f"{ServingOptions().log_flush_s:g} s, off the requests' path): {LOG} - {NOLOG} = "
        f"{log.p50_ms - nolog.p50_ms:+.2f} ms over HTTP, {h_log.p50_ms - h_nolog.p50_ms:+.2f} ms "
        "by handle.",
    ]
    return lines


def _gpu_lines(gpu: dict, batch_rows: int, clients: int) -> list[str]:
    if "skipped" in gpu:
        return [f"- GPU: {gpu['skipped']}: skipped."]
    cell, nvml = gpu["cell"], gpu["nvml"]
    return [
        f"- GPU: {nvml.get('name', '?')}: a {gpu['params']:,}-parameter MLP (`num_gpus = 0.5`, "
        f"logging off, default batching) took {batch_rows:,}-row requests from {clients} clients:"
        f" {cell.rows_per_s:,.0f} rows/s ({cell.rps:,.1f} req/s, p50 {cell.p50_ms:.1f} ms, "
        f"p99 {cell.p99_ms:.1f} ms, {cell.errors} errors, "
        f"{cell.cpu_ms_per_request():.1f} CPU ms/req); NVML utilisation during it mean "
        f"{nvml.get('mean', float('nan')):.0f}%, max {nvml.get('max', 0)}% "
        f"({nvml.get('samples', 0)} samples), peak memory in use "
        f"{nvml.get('memory_mib', 0):,.0f} MiB.",
    ]


def section(meta: dict, plan: list[dict], cells: dict[str, Cell], parts: dict[str, Cell],
             gpu: dict, args) -> str:
    m, c = meta["machine"], args.clients
    defaults = meta["defaults"]
    lines = [
        START,
        "## Serving",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/serve.py` "
        f"(`python bench/serve.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--clients {c} --breakdown-seconds {args.breakdown_seconds:g}`).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, Python {m['python']}, "
        f"Ray {meta['ray']}, torch {meta['torch']}, httpx {meta['httpx']}; 1-min load average "
        f"at start: {m['load']} (a shared machine: every cell runs in every round, interleaved).",
        f"- One local Ray (`num_cpus = {args.ray_cpus}`), one Serve HTTP proxy on loopback for "
        "both; the client runs in the same machine (its CPU counts against the server's). "
        "Bare: a `@serve.deployment` whose `__call__` returns the request body "
        f"({meta['ingress_cpus']} CPU, like the ingress). Appliance: proxy -> ModelServer, "
        "one hop like the bare echo (bearer token and scope at its door, request id, canary "
        "routing, parse, batch, score, log), serving "
        f"defaults `max_batch_size = {defaults.max_batch_size}`, `batch_wait_s = "
        f"{defaults.batch_wait_s}`, `num_cpus = {defaults.num_cpus}`, logging on; {NOLOG} sets "
        f"`log_predictions = false`, {UNBATCHED} `max_batch_size = 1`.",
        f"- Model: the demo's network (MLP {meta['hidden']} x {meta['layers']} on "
        f"{meta['width']} design columns) trained here in {meta['train_s']:.1f} s on "
        f"{args.train_rows:,} rows of `appliance.data.synthetic` (holdout accuracy "
        f"{meta['accuracy']:.3f}).",
        f"- Payload: one applicant (8 FP64 + 2 BYTES inputs) as OIP v2 JSON, "
        f"{meta['bytes'][1]:,} bytes, the same bytes to every endpoint with the same headers; "
        f"the {args.batch_rows:,}-row request is {meta['bytes'][args.batch_rows]:,} bytes.",
        f"- Client: httpx {meta['httpx']} AsyncClient, keep-alive, closed loop (each client sends "
        f"its next request when the last is answered); per cell {args.rounds} round(s) of "
        f"{args.seconds:g} s after {args.warmup:g} s of warm-up; percentiles over every answered "
        "request; req/s = answered requests / measured seconds; CPU ms/req = user + system CPU "
        "of the client process and every process of this Ray (from /proc, idle ones' background "
        "work included) in the measured windows, per answered request.",
        "",
        *_cell_rows(cells, plan),
        "",
        *_targets(cells, c, args.batch_rows),
        "",
        "Where the time goes: one client taking turns among these probes, request by request, "
        f"for {args.breakdown_seconds:g} s (so that all meet the same load):",
        "",
        *_breakdown_rows(parts, meta["bytes"][1]),
        "",
        "CPU per answered request by process, ms (the front ingress only idles in every cell: "
        "bare has its own route, and each model answers its own):",
        "",
        *_cpu_rows(cells, plan),
        "",
        *_gpu_lines(gpu, args.batch_rows, c),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Put `section` in place of the one between the markers `start` and `end` (the serving
    bench's by default), or at the end of `path`."""
    _write_between(path, section, start, end)
