#!/usr/bin/env bash
# Run docs/own-data.md's commands as written, in order, and time each one.
#
#   bash scripts/run_tutorial.sh WORKDIR [THREADS]
#
# WORKDIR must hold data/train and data/test (class sub-folders), e.g. made with
#   python scripts/make_folder_dataset.py --cifar10 ../shared/data/cifar10 --out WORKDIR/data
# Each command's output goes to WORKDIR/logs/<name>.log and its wall time to
# WORKDIR/times.tsv; rerunning skips the commands already listed there as finished (the
# training commands resume with --resume). The sizes are the tutorial's: nothing is shrunk.
set -euo pipefail
work=${1:?usage: run_tutorial.sh WORKDIR [THREADS]}
threads=${2:-2}
export OMP_NUM_THREADS=$threads
if ! command -v irad > /dev/null; then  # not on PATH: the repository's venv, by absolute path
  venv=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
  [[ -x $venv/irad ]] || { echo "irad not found: activate the venv (source .venv/bin/activate)" >&2; exit 2; }
  export PATH=$venv:$PATH
fi
cd "$work"
mkdir -p logs
touch times.tsv
step() {  # step NAME RUN_DIR -- command...
  local name=$1 run=$2; shift 3
  if grep -q "^$name	" times.tsv; then echo "skip $name (finished)"; return; fi
  if [[ -n $run && -f $run/model.json ]]; then  # finished, killed before its time was written
    printf '%s\t%s\t%s\n' "$name" "?" "$*" >> times.tsv; echo "skip $name (model there)"; return
  fi
  local args=("$@")
  [[ $2 == folder-to-npz ]] || args+=(--threads "$threads")  # the one command without threads
  if [[ -n $run && -f $run/last.json ]]; then args+=(--resume); fi
  echo "$(date +%T) $name: ${args[*]}"
  local start=$SECONDS
  "${args[@]}" > "logs/$name.log" 2>&1
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "${args[*]}" >> times.tsv
}
step folder-to-npz-train "" -- irad folder-to-npz --input data/train --out npz/train.npz
step folder-to-npz-test "" -- irad folder-to-npz --input data/test --out npz/test.npz
step train-classifier runs/clf -- irad train-classifier --dataset data/train \
    --eval-dataset data/test --subset stratified --model resnet20 --epochs 15 --out runs/clf
step classify "" -- irad classify -w runs/clf/model -d data/test
step prepare-pairs "" -- irad prepare-pairs -w runs/clf/model -d data/train --steps 10 \
    --out pairs/mine
step train-inr runs/inr -- irad train-inr --pairs pairs/mine --preset cpu --subset stratified \
    --out runs/inr
step train-samplenet runs/irad -- irad train-samplenet --representation runs/inr \
    --pairs pairs/mine -w runs/clf/model --preset cpu --subset stratified --out runs/irad
step purify "" -- irad purify --defense irad:checkpoint=runs/irad --input data/test \
    --output purified
step evaluate-oblivious "" -- irad evaluate -w runs/clf/model --dataset data/test --n 300 \
    --subset stratified --defense none --defense recons:checkpoint=runs/irad \
    --defense irad:checkpoint=runs/irad --attack autoattack --threat oblivious \
    --out results/oblivious
step evaluate-adaptive "" -- irad evaluate -w runs/clf/model --dataset data/test --n 100 \
    --subset stratified --defense none --defense irad:checkpoint=runs/irad \
    --attack pgd:steps=20 --threat adaptive --out results/adaptive
cat times.tsv
