"""The monitor: everything the loop decides without Ray.

    windows       cut logged predictions into windows by each deployment's policy
    labels        merge late labels into their windows through the request index
    window_stats  per version in a window: drift, live metrics, the label-free estimate
    metrics       live metrics from labels; estimate: calibration check and CBPE
    drift         a version's rows against its own reference profile (kernels)
    rules         alert rules (config); alerts: raise, dedup, cooldown, ack, resolve
    notify        the alert outbox: log and webhook, retried, at least once
    policy        a model's window, retrain and canary policy; policy_store: stored, audited
    retrain       retrain triggers and the retraining set; canary: the canary's verdict
    service       one monitor pass over every deployment, under leases
    fairness      segment statistics and fairness gaps on a protected attribute
    importance    a version's permutation importance, and a window's importance shift
    trace         one logged request through the request index: inputs, answer, lineage

The orchestrator that acts on retrain requests (training on Ray, serving changes) lives in
`appliance.pipelines.loop`; the long-running service in `appliance.pipelines.daemon`.
"""
