#!/usr/bin/env bash
# ichvol demo: the whole PACS loop on this machine, in about a minute on a CPU.
#   1. makes a synthetic head CT study with a hemorrhage (ichvol synth),
#   2. starts a DCMTK storescp as the "PACS" that receives the results,
#   3. starts `ichvol serve` on its embedded defaults (SQLite, shipped model), configured by ICHVOL_*
#      environment variables, data under DEMO_DIR,
#   4. sends the study with DCMTK storescu, waits for the SEG and SR to arrive at the receiver (the SR
#      only, if the model finds no hemorrhage),
#   5. prints `ichvol report <StudyInstanceUID>` and stops everything.
# Usage: deploy/demo.sh [DEMO_DIR]   (default: a new temporary folder; kept afterwards for a look)
# Environment: ICHVOL_DEMO_TIMEOUT (seconds to wait for the results, default 300), ICHVOL_DEMO_SEED.
set -euo pipefail

demo_dir=${1:-$(mktemp -d -t ichvol-demo.XXXXXX)}
timeout_s=${ICHVOL_DEMO_TIMEOUT:-300}
seed=${ICHVOL_DEMO_SEED:-11}
python=${PYTHON:-python3}

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# DCMTK, not the Python apps of the same name that pynetdicom installs (they shadow them on PATH).
dcmtk_tool() {
    local dir
    for dir in /usr/bin /usr/local/bin; do
        if [[ -x $dir/$1 && $("$dir/$1" --version 2>/dev/null) == *dcmtk* ]]; then echo "$dir/$1"; return; fi
    done
    fail "DCMTK $1 not found (Debian/Ubuntu: apt-get install dcmtk)"
}
storescp=$(dcmtk_tool storescp)
storescu=$(dcmtk_tool storescu)
dcmdump=$(dcmtk_tool dcmdump)
command -v ichvol >/dev/null || fail "ichvol is not installed (pip install -e .)"
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tag() { "$dcmdump" -q +P "$1" "$2" 2>/dev/null | sed -n 's/.*\[\(.*\)\].*/\1/p' | head -n1; }

mkdir -p "$demo_dir"/{study,received,var}
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listen_port=$(free_port)
pacs_port=$(free_port)
export ICHVOL_DATA_DIR="$demo_dir/var"
export ICHVOL_LISTENER__HOST=127.0.0.1
export ICHVOL_LISTENER__PORT=$listen_port
export ICHVOL_LISTENER__STABLE_SECONDS=2
export ICHVOL_LISTENER__ALLOWED_CALLING_AETS='["DEMO"]'
export ICHVOL_DESTINATIONS="[{ae_title = \"PACS\", host = \"127.0.0.1\", port = $pacs_port}]"

step "Making a synthetic head CT study (seed $seed) in $demo_dir/study"
ichvol synth --out "$demo_dir/study" --cases 1 --seed "$seed" --format dicom --no-hemorrhage 0 \
    > "$demo_dir/synth.log" 2>&1 \
    || { cat "$demo_dir/synth.log" >&2; fail "ichvol synth failed"; }
first=$(find "$demo_dir/study" -type f -name '*.dcm' | sort | head -n1)
[[ -n $first ]] || first=$(find "$demo_dir/study" -type f ! -name '*.*' | sort | head -n1)
[[ -n $first ]] || fail "ichvol synth wrote no DICOM files"
study_uid=$(tag StudyInstanceUID "$first")
n_files=$(find "$demo_dir/study" -type f -name "*.dcm" | wc -l)
echo "    $n_files files, StudyInstanceUID $study_uid"
truth=$(find "$demo_dir/study/truth" -name '*.json' 2>/dev/null | head -n1)
[[ -n $truth ]] && "$python" -c 'import json, sys; t = json.load(open(sys.argv[1]))
print("    true hemorrhage (synthetic ground truth): " + (", ".join(f"{k} {v:.1f} ml" for k, v in
      t["volumes_ml"].items()) or "none"))' "$truth" 2>/dev/null || true

step "Starting the receiving PACS (DCMTK storescp, AE PACS) on port $pacs_port"
"$storescp" -aet PACS +xa +uf -od "$demo_dir/received" "$pacs_port" > "$demo_dir/storescp.log" 2>&1 &
pids+=($!)

step "Starting ichvol serve (listener AE ICHVOL on port $listen_port, data in $demo_dir/var)"
ichvol serve > "$demo_dir/ichvol.log" 2>&1 &
pids+=($!)
serve_pid=$!
for _ in $(seq 1 120); do
    (echo > "/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { tail -n 30 "$demo_dir/ichvol.log" >&2; fail "ichvol serve exited"; }
    sleep 0.5
done
(echo > "/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null || fail "ichvol serve is not listening on $listen_port"

step "Sending the study with storescu (calling AE DEMO)"
"$storescu" -aet DEMO -aec ICHVOL +sd +r +sp "*.dcm" 127.0.0.1 "$listen_port" "$demo_dir/study" > "$demo_dir/storescu.log" 2>&1 \
    || { tail -n 20 "$demo_dir/storescu.log" >&2; fail "storescu failed"; }
start=$SECONDS

step "Waiting for the results at the receiver (up to ${timeout_s} s; inference runs on $(
    "$python" -c 'import torch; print("GPU" if torch.cuda.is_available() else "CPU")' 2>/dev/null || echo CPU))"
have_modality() {
    local f
    for f in "$demo_dir"/received/*; do
        [[ -f $f ]] && [[ $(tag Modality "$f") == "$1" ]] && return 0
    done
    return 1
}
# ichvol sends the SEG (made only when hemorrhage was found: a SEG needs a segment) before the SR.
while ! have_modality SR; do
    kill -0 "$serve_pid" 2>/dev/null || { tail -n 30 "$demo_dir/ichvol.log" >&2; fail "ichvol serve exited"; }
    if (( SECONDS - start > timeout_s )); then
        tail -n 30 "$demo_dir/ichvol.log" >&2
        ichvol report "$study_uid" >&2 || true
        fail "no SR after ${timeout_s} s (log: $demo_dir/ichvol.log)"
    fi
    sleep 1
done
sleep 1  # the SR is complete on disk
if have_modality SEG; then
    echo "    SEG and SR received after $((SECONDS - start)) s:"
else
    echo "    SR received after $((SECONDS - start)) s (no hemorrhage found, so no SEG):"
fi
for f in "$demo_dir"/received/*; do
    echo "      $(tag Modality "$f") $(tag SeriesDescription "$f")  ($(basename "$f"))"
done

if command -v dciodvfy >/dev/null; then
    for f in "$demo_dir"/received/*; do
        errors=$(dciodvfy "$f" 2>&1 | grep -c '^Error' || true)
        echo "    dciodvfy $(tag Modality "$f"): $errors error(s)"
    done
fi

step "ichvol report $study_uid"
ichvol report "$study_uid" 2> "$demo_dir/report.log" || { cat "$demo_dir/report.log" >&2; fail "ichvol report failed"; }

step "Done. Stopping ichvol and the receiver; files kept in $demo_dir"
