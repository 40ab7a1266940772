"""Unique Alertmanager v4 payloads, built cheaply from byte templates.

Every alert of every payload is a new occurrence: its `instance` label, its fingerprint and its
startsAt differ from all others in the run, so neither the receipt digest nor (fingerprint,
startsAt) dedup short-circuits the write path. Alertmanager's fingerprint is a 64-bit FNV hash of the
labels: consecutive alerts land anywhere in an index on it. Here it is the alert's counter scrambled
by an odd 64-bit multiplier (a bijection, so still unique), which spreads keys the same way at a
fraction of the load generator's CPU; a plain counter would append every key at the right edge of
such an index and make it look cheaper than it is with real fingerprints.
"""

from __future__ import annotations

ALERTNAMES = (
    "ModelDrift",
    "PredictionLatencyHigh",
    "FeatureStoreStale",
    "ModelErrorRateHigh",
    "GPUMemoryPressure",
    "InferenceQueueBacklog",
    "ModelAccuracyDrop",
    "DataQualityNullRate",
    "ServiceDown",
    "KubePodCrashLooping",
)
SEVERITIES = ("critical", "warning", "warning", "info")
MODELS = tuple(f"model-{i:02d}" for i in range(50))
TEAMS = tuple(f"team-{i}" for i in range(8))
NAMESPACES = tuple(f"ns-{i}" for i in range(10))

_ALERT = (
    '{"status":"firing","labels":{"alertname":"%s","severity":"%s","model":"%s","team":"%s",'
    '"namespace":"%s","job":"model-serving","instance":"pod-%s-%d-%d"},'
    '"annotations":{"summary":"%s on %s","description":"Benchmark alert %d/%d of run %s."},'
    '"startsAt":"2026-11-%02dT%02d:%02d:%02d.%09dZ","endsAt":"0001-01-01T00:00:00Z",'
    '"generatorURL":"http://prometheus.monitoring:9090/graph?g0.expr=model_psi+%%3E+0.2&g0.tab=1",'
    '"fingerprint":"%016x"}'
)
_ENVELOPE = (
    '{"receiver":"bench","status":"firing","alerts":[%s],"groupLabels":{"alertname":"%s"},'
    '"commonLabels":{"job":"model-serving"},"commonAnnotations":{},'
    '"externalURL":"http://alertmanager.monitoring:9093","version":"4",'
    '"groupKey":"{}:{alertname=\\"%s\\", bench_group=\\"g%d\\"}","truncatedAlerts":0}'
)


_SCRAMBLE = 0x9E3779B97F4A7C15  # odd: multiplying by it modulo 2**64 maps distinct counters to distinct keys
_MASK = (1 << 64) - 1


def fingerprint(counter: int) -> int:
    """A 64-bit fingerprint that is unique per counter and spread like a hash."""
    return (counter * _SCRAMBLE) & _MASK


class PayloadFactory:
    """`body(seq)` is the seq-th unique payload of this run (bytes), `per_payload` alerts each."""

    def __init__(self, per_payload: int, run_id: str, fingerprint_base: int = 0) -> None:
        self.per_payload = per_payload
        self.run_id = run_id
        self.fingerprint_base = fingerprint_base

    def body(self, seq: int) -> bytes:
        n = self.per_payload
        name = ALERTNAMES[seq % len(ALERTNAMES)]
        secs = seq  # one second of startsAt per payload: 30 days hold 2.6M payloads
        day, rest = divmod(secs, 86400)
        hh, rest = divmod(rest, 3600)
        mm, ss = divmod(rest, 60)
        day = 1 + day % 28
        alerts = []
        for i in range(n):
            k = seq * n + i
            alerts.append(
                _ALERT
                % (
                    name,
                    SEVERITIES[k % 4],
                    MODELS[k % 50],
                    TEAMS[k % 8],
                    NAMESPACES[k % 10],
                    self.run_id,
                    seq,
                    i,
                    name,
                    MODELS[k % 50],
                    i + 1,
                    n,
                    self.run_id,
                    day,
                    hh,
                    mm,
                    ss,
                    i,
                    fingerprint(self.fingerprint_base + k),
                )
            )
        return (_ENVELOPE % (",".join(alerts), name, name, seq % 100)).encode()
