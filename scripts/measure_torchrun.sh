#!/usr/bin/env bash
# One process against two (torchrun, Gloo, one thread each): the same `irad evaluate` (first 200
# test images) and `irad prepare-pairs` (400 training images), their wall times, and whether the
# results are the same image for image (evaluate) and byte for byte (pairs).
#
#   IRAD_DATA=../shared/data/cifar10 bash scripts/measure_torchrun.sh OUTDIR [--pause-others]
#
# --pause-others stops every other irad process (SIGSTOP) for the measurement and continues them
# (SIGCONT) at the end, so that the two cores are idle (their own wall times then include the
# pause). The figures in docs/evaluation.md come from this script.
set -euo pipefail
out=${1:?usage: measure_torchrun.sh OUTDIR [--pause-others]}
weights=${WEIGHTS:-../shared/data/weights/resnet56-4bfd9763.th}
if ! command -v irad > /dev/null; then  # not on PATH: the repository's venv, by absolute path
  venv=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
  [[ -x $venv/irad ]] || { echo "irad not found: activate the venv (source .venv/bin/activate)" >&2; exit 2; }
  export PATH=$venv:$PATH
fi
export OMP_NUM_THREADS=1
rm -rf "$out" && mkdir -p "$out"
paused=""
if [[ ${2:-} == --pause-others ]]; then
  paused=$(pgrep -f "bin/irad |python -m irad" | tr '\n' ' ' || true)
  if [[ -n $paused ]]; then kill -STOP $paused; fi
  trap 'if [[ -n $paused ]]; then kill -CONT $paused || true; fi' EXIT
  echo "paused: ${paused:-nothing}"
fi
timed() {  # timed NAME command...: wall seconds into OUT/times.tsv
  local name=$1; shift
  local start; start=$(date +%s.%N)
  "$@" > "$out/$name.log" 2>&1 \
    || { echo "$name failed; the end of $out/$name.log:" >&2; tail -n 20 "$out/$name.log" >&2; exit 1; }
  printf '%s\t%.1f\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$out/times.tsv"
}
two=(torchrun --nproc_per_node 2 --no-python --)
evaluate=(irad evaluate -w "$weights" --n 200 --batch-size 50 --defense none
  --defense jpeg:quality=75 --attack pgd:steps=20 --threat oblivious --threads 1 --seed 0
  --cost-repeats 0)
pairs=(irad prepare-pairs -w "$weights" --n 400 --chunk 50 --steps 10 --threads 1 --seed 0)
timed evaluate-1 "${evaluate[@]}" --out "$out/one" --cache-dir "$out/cache-one"
timed evaluate-2 "${two[@]}" "${evaluate[@]}" --out "$out/two" --cache-dir "$out/cache-two"
timed pairs-1 "${pairs[@]}" --out "$out/pairs-one"
timed pairs-2 "${two[@]}" "${pairs[@]}" --out "$out/pairs-two"
python - "$out" <<'PY'
import hashlib
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
one, two = (json.loads((out / k / "result.json").read_text()) for k in ("one", "two"))
same = one["labels"] == two["labels"]
for name, a in one["defenses"].items():
    b = two["defenses"][name]
    same &= all(a[k] == b[k] for k in ("clean_per_image", "clean_predicted", "worst_case_per_image"))
    for attack, ra in a["attacks"].items():
        rb = b["attacks"][attack]
        same &= ra["per_image"] == rb["per_image"] and ra["predicted"] == rb["predicted"]
        print(f"{name} / {attack}: RA {ra['ra']['percent']} % {ra['ra']['ci95']}")
print("evaluate, per-image results identical:", same)
for k, r in (("1 process", one), ("2 processes", two)):
    t = r["timing"]
    attack = sum(v for key, v in t.items() if key.startswith("attack_s"))
    print(f"evaluate, {k}: attack {attack:.1f} s, total {t['total_s']:.1f} s")


def digests(folder):
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*.*")) if f.is_file() and f.name != "manifest.json"}


p1, p2 = digests(out / "pairs-one"), digests(out / "pairs-two")
m1, m2 = (json.loads((out / k / "manifest.json").read_text()) for k in ("pairs-one", "pairs-two"))
stamps = {"created", "finished", "date_utc"}


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in stamps}
    return value


print(f"pairs: {len(p1)} chunk files, identical: {p1 == p2}; manifests equal but for "
      f"timestamps: {strip(m1) == strip(m2)}")
PY
