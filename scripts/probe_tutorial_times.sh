#!/usr/bin/env bash
# Per-step times of docs/own-data.md's commands at one image size, from short probes: each
# training command runs a few steps (--max-steps-per-epoch), pairs and purify a few images.
#
#   IRAD_DATA=../shared/data/cifar10 bash scripts/probe_tutorial_times.sh WORKDIR SIZE \
#       [THREADS] [BATCH] [--pause-others]
#
# Makes WORKDIR/data (2 CIFAR-10 classes upscaled to SIZE x SIZE, 32 training and 8 test images
# each), runs the probes and writes WORKDIR/times.tsv (step, seconds, steps or images, the
# command). BATCH (default 16) is the batch of every training command: at 224 x 224 the presets'
# batches (128, 32) are what a CPU user would lower first. --pause-others stops every other irad
# process (SIGSTOP) while the probes run and continues them (SIGCONT) at the end.
set -euo pipefail
work=${1:?usage: probe_tutorial_times.sh WORKDIR SIZE [THREADS] [BATCH] [--pause-others]}
size=${2:?image size}
threads=${3:-2}
batch=${4:-16}
here=$(cd "$(dirname "$0")/.." && pwd)
cifar=${IRAD_DATA:?set IRAD_DATA to the CIFAR-10 folder (train.npz, test.npz)}
cifar=$(cd "$cifar" && pwd)  # absolute: the probes run inside WORKDIR
[[ $threads =~ ^[0-9]+$ && $batch =~ ^[0-9]+$ ]] || {
  echo "THREADS and BATCH are numbers (got '$threads', '$batch'); --pause-others comes last" >&2
  exit 2
}
if ! command -v irad > /dev/null; then  # not on PATH: the repository's venv, by absolute path
  venv=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
  [[ -x $venv/irad ]] || { echo "irad not found: activate the venv (source .venv/bin/activate)" >&2; exit 2; }
  export PATH=$venv:$PATH
fi
export OMP_NUM_THREADS=$threads
rm -rf "$work" && mkdir -p "$work" && cd "$work"
python "$here/scripts/make_folder_dataset.py" --cifar10 "$cifar" --out data --classes cat,dog \
    --train-per-class 32 --test-per-class 8 --size "$size"
paused=""
if [[ ${5:-} == --pause-others ]]; then
  paused=$(pgrep -f "bin/irad |python -m irad" | tr '\n' ' ' || true)
  if [[ -n $paused ]]; then kill -STOP $paused; fi
  trap 'if [[ -n $paused ]]; then kill -CONT $paused || true; fi' EXIT
fi
probe() {  # probe NAME UNITS command...: wall seconds (start-up included) into times.tsv
  local name=$1 units=$2; shift 2
  local start; start=$(date +%s.%N)
  "$@" --threads "$threads" > "$name.log" 2>&1 \
    || { echo "$name failed; the end of $work/$name.log:" >&2; tail -n 20 "$name.log" >&2; exit 1; }
  printf '%s\t%.1f\t%s\t%s\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc)" "$units" "$*" \
    | tee -a times.tsv
}
steps=2
probe classifier "$steps steps of $batch" irad train-classifier --dataset data/train \
    --model resnet20 --epochs 1 --max-steps-per-epoch $steps --batch-size "$batch" \
    --no-final-eval --eval-n 0 --out runs/clf --device cpu
probe pairs "$((2 * batch)) images" irad prepare-pairs -w runs/clf/model -d data/train \
    --n $((2 * batch)) --steps 10 --out pairs/mine
probe stage1 "$steps steps of $batch" irad train-inr --pairs pairs/mine --preset cpu --epochs 1 \
    --max-steps-per-epoch $steps --batch-size "$batch" --eval-n 0 --out runs/inr --device cpu
probe stage2 "$steps steps of $batch" irad train-samplenet --representation runs/inr \
    --pairs pairs/mine -w runs/clf/model --preset cpu --epochs 1 --max-steps-per-epoch $steps \
    --batch-size "$batch" --eval-n 0 --out runs/irad --device cpu
probe purify "16 images" irad purify --defense irad:checkpoint=runs/irad -i data/test -o pure
cat times.tsv
