#!/usr/bin/env bash
# VoxTok LibriTTS recipe (ESPnet/Kaldi conventions): numbered stages, --stage/--stop_stage.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=0            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel jobs for data preparation / tokenization
ngpu=0             # GPUs for training (0 = CPU); >1 uses DDP through the training code
mini=false         # true: synthetic mini corpus + tiny configs (runs on 2 CPU cores)
libritts_root=""   # path to real LibriTTS (holds train-clean-100/, dev-clean/, test-clean/ ...)
tag=""             # experiment name: exp/<tag>/ (default: mini or libritts)
force=false        # true: re-run stages even when they are marked complete
seed=0             # corpus/model seed
data_dir=data      # where the Kaldi data dirs go: <data_dir>/{train,dev,test}

help_message="Usage: $0 [options]
  e.g.: $0 --mini true                      # synthetic corpus, tiny models, CPU
        $0 --libritts_root /data/LibriTTS --ngpu 4
Options:
  --stage N          first stage (default $stage)
  --stop_stage N     last stage (default $stop_stage)
  --nj N             parallel jobs (default $nj)
  --ngpu N           GPUs for training (default $ngpu)
  --mini true|false  synthetic mini corpus and tiny configs (default $mini)
  --libritts_root P  real LibriTTS root
  --tag NAME         experiment tag (exp/<tag>)
  --force true|false re-run completed stages (default $force)
  --seed N           seed (default $seed)
  --data_dir DIR     Kaldi data dirs (default $data_dir)
Stages:
  0  corpus + data/{train,dev,test} (Kaldi data dirs)"

. utils/parse_options.sh

if [ "$mini" = true ]; then
  data_cfg="data=mini data.seed=$seed data.corpus_dir=downloads/mini_libritts_seed$seed"
  [ -n "$tag" ] || tag=mini
elif [ -n "$libritts_root" ]; then
  data_cfg="data=libritts data.corpus_dir=$libritts_root"
  [ -n "$tag" ] || tag=libritts
else
  echo "$0: give --mini true or --libritts_root PATH (see --help)" >&2; exit 2
fi
data=$data_dir
exp=exp/$tag
mkdir -p "$exp"

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

# run_stage N NAME CMD...: runs CMD with its output in exp/<tag>/stageN_NAME/log, unless the stage
# is marked complete (.done) and --force is false. A killed stage has no .done and re-runs.
run_stage() {
  local n=$1 name=$2; shift 2
  if [ "$stage" -gt "$n" ] || [ "$stop_stage" -lt "$n" ]; then return 0; fi
  local dir="$exp/stage${n}_${name}"
  if [ -f "$dir/.done" ] && [ "$force" != true ]; then
    log "stage $n ($name): already complete, skipping (--force true to redo)"; return 0
  fi
  mkdir -p "$dir"; rm -f "$dir/.done"
  log "stage $n ($name): started, log in $dir/log"
  local t0=$SECONDS
  if ! "$@" > >(tee "$dir/log") 2>&1; then
    log "stage $n ($name): FAILED, see $dir/log"; exit 1
  fi
  echo "$((SECONDS - t0))" > "$dir/seconds"
  touch "$dir/.done"
  log "stage $n ($name): done in $((SECONDS - t0)) s"
}

# shellcheck disable=SC2086
run_stage 0 data python -m voxtok.recipes.prepare_data $data_cfg data_dir="$data" nj="$nj" \
  hydra_dir="$exp/stage0_data/hydra"

log "finished stages $stage..$stop_stage for $exp"
