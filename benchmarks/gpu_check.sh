#!/usr/bin/env bash
# The GPU check: on a CUDA host, in about 8 minutes, the figures and tests CPU machines cannot give.
#
#   bash benchmarks/gpu_check.sh [OUT.md]        # PYTHON=... to use another interpreter
#
# 1. The offline fp16 limit of MiniLM (tokenise + forward + pool, no HTTP) at batch 32, 128, 256.
# 2. Convoy at c=1, 64, 256, with --workers 1 and --workers (cores - 2), on short texts and on
#    paragraphs; the ratio of its throughput to the offline limit.
# 3. The test suite's CUDA-marked tests (tests/integration/test_cuda.py): fp16 answers equal fp32's,
#    and a deliberate device-side assert in a child `convoy serve` turns /health and /ready 503 and
#    makes the process exit for its supervisor (issue 12).
# Prints one Markdown report (also written to OUT.md when given), headed by the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=${1:-}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

CARD=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
CORES=$(nproc)
WORKERS_N=$(( CORES > 4 ? CORES - 2 : 2 ))
DURATION=${DURATION:-6}
echo "card: $CARD; cores: $CORES" >&2

bench() { "$PY" -m server.cli bench --no-progress --duration "$DURATION" --warmup 2 "$@"; }

# ---- 1. offline limit --------------------------------------------------------------------------
for b in 32 128 256; do
    for profile in short paragraph; do
        bench --offline --device cuda --dtype float16 --max-batch-size "$b" --profile "$profile" \
            --json "$WORK/offline-$b-$profile.json" >&2
    done
done

# ---- 2. Convoy ---------------------------------------------------------------------------------
serve_and_load() {  # workers port
    local workers=$1 port=$2 flags=()
    [ "$workers" -gt 1 ] && flags=(--workers "$workers")
    "$PY" -m server.cli serve --device cuda --dtype float16 --port "$port" --no-access-log \
        --log-level warning "${flags[@]}" > "$WORK/serve-$workers.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break
        kill -0 "$pid" 2> /dev/null || { cat "$WORK/serve-$workers.log" >&2; return 1; }
        sleep 0.5
    done
    for profile in short paragraph; do
        bench --url "http://127.0.0.1:$port" --route /v1/embeddings --sweep 1,64,256 --profile "$profile" \
            --processes "$(( CORES > 8 ? 4 : 2 ))" --json "$WORK/convoy-$workers-$profile.json" >&2
    done
    kill -INT "$pid"
    wait "$pid" || true
}
serve_and_load 1 8501
serve_and_load "$WORKERS_N" 8502

# ---- 3. CUDA-marked tests ----------------------------------------------------------------------
set +e
"$PY" -m pytest -m cuda -q -p no:cacheprovider tests/integration/test_cuda.py > "$WORK/pytest.log" 2>&1
TESTS=$?
set -e

# ---- the report --------------------------------------------------------------------------------
"$PY" - "$WORK" "$CARD" "$WORKERS_N" "$TESTS" > "$WORK/report.md" <<'EOF'
import json, sys
from pathlib import Path

work, card, workers_n, tests = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def levels(name):
    return json.loads((work / name).read_text())["levels"]

print(f"### GPU check: {card}\n")
print("Offline limit, MiniLM fp16 (tokenise + forward + pool), sequences/s:\n")
print("| batch | short | paragraph |\n|---:|---:|---:|")
limit = {}
for b in (32, 128, 256):
    row = []
    for profile in ("short", "paragraph"):
        best = max(level["chunks_per_s"] for level in levels(f"offline-{b}-{profile}.json"))
        limit[profile] = max(limit.get(profile, 0.0), best)
        row.append(f"{best:,.0f}")
    print(f"| {b} | {' | '.join(row)} |")
print("\nConvoy, /v1/embeddings (one text a request), chunks/s and the ratio to the best offline limit:\n")
print("| workers | texts | c=1 p50 ms | c=1 | c=64 | c=256 | c=256 / offline | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for workers in ("1", workers_n):
    for profile in ("short", "paragraph"):
        by = {level["label"]: level for level in levels(f"convoy-{workers}-{profile}.json")}
        c1, c64, c256 = by["c=1"], by["c=64"], by["c=256"]
        errors = sum(sum(level["errors"].values()) for level in by.values())
        print(
            f"| {workers} | {profile} | {c1['latency_ms']['p50']:.2f} | {c1['chunks_per_s']:,.0f} | "
            f"{c64['chunks_per_s']:,.0f} | {c256['chunks_per_s']:,.0f} | "
            f"{c256['chunks_per_s'] / limit[profile]:.2f}x | {errors} |"
        )
tail = (work / "pytest.log").read_text().strip().splitlines()[-1:]
print(f"\nCUDA-marked tests: {'passed' if tests == 0 else 'FAILED'} ({tail[0] if tail else 'no output'})")
EOF
cat "$WORK/report.md"
[ -n "$OUT" ] && cp "$WORK/report.md" "$OUT"
[ "$TESTS" -eq 0 ] || { tail -n 40 "$WORK/pytest.log" >&2; exit 1; }
