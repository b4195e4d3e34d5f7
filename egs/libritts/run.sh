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
codec=wavtokenizer  # codec to train and tokenize with (stage 1-3)
codec_config=""    # configs/codec/<name>.yaml (default: <codec>_tiny with --mini, else the paper size)
train_args=""      # extra Hydra overrides for every training stage, e.g. "trainer.max_steps=10"
data_args=""       # extra Hydra overrides for stage 0, e.g. "data.num_speakers=8 data.utts_per_speaker=4"
codec_budget=00:00:20:00  # wall-clock cap of codec training with --mini (DD:HH:MM:SS)

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
  --codec NAME       codec for stages 1-3 (default $codec)
  --codec_config C   codec config name (default: <codec>_tiny with --mini, else paper size)
  --train_args ARGS  extra Hydra overrides for training stages
  --data_args ARGS   extra Hydra overrides for the corpus/data stage
Stages:
  0  data        corpus + data/{train,dev,test} (Kaldi data dirs)
  1  codec       train the codec (resumes from its last checkpoint)
  2  tokenize    tokenize train/dev/test into sharded token stores
  3  codec_eval  evaluate the codec against Codec2 1200/3200 on the test speakers"

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
dump=dump/$tag
mkdir -p "$exp"

declare -A paper_config=([wavtokenizer]=wavtokenizer_75_paper)
if [ -z "$codec_config" ]; then
  if [ "$mini" = true ]; then codec_config=${codec}_tiny; else codec_config=${paper_config[$codec]:-${codec}_paper}; fi
fi
if [ "$ngpu" -gt 0 ]; then
  trainer="trainer=gpu trainer.devices=$ngpu"
else
  trainer="trainer=cpu"
fi
[ "$mini" = true ] && trainer="$trainer trainer.max_time=$codec_budget"
codec_exp=$exp/codec_$codec

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
  hydra_dir="$exp/stage0_data/hydra" $data_args

# shellcheck disable=SC2086
run_stage 1 codec python -m voxtok.recipes.train_codec codec="$codec_config" $trainer \
  train_dir="$data/train" valid_dir="$data/dev" exp_dir="$codec_exp" $train_args

run_stage 2 tokenize python -m voxtok.recipes.tokenize model="$codec_exp/model" data_dir="$data" \
  out_dir="$dump/tokens/$codec" nj="$nj"

run_stage 3 codec_eval python -m voxtok.recipes.eval_codec model="$codec_exp/model" test_dir="$data/test" \
  out_dir="$codec_exp/eval" nj="$nj"

log "finished stages $stage..$stop_stage for $exp"
