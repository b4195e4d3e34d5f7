#!/usr/bin/env bash
# Distillation ablation: a plain RVQ codec against DM-Codec (LM teacher; LM + speech teachers) and
# FuseCodec, all at the same architecture and bitrate (configs/codec/*_tiny.yaml), each trained with
# the same budget on <data_dir>/train with teacher features, then evaluated on <data_dir>/test with
# the first 1, 2 and 8 RVQ codebooks (PESQ, STOI, mel distance, speaker similarity, Whisper dWER).
#
#   local/distill_ablation.sh --teachers_dir dump/mini/teachers/train --budget 20
#
# Teacher features come from python -m voxtok.recipes.extract_teachers (out_dir/<split>/ holds the
# stores; the speech-teacher store `sm` needs sm.model_dir or sm.s3_model there).
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
# Output goes to log files: one progress line every few updates instead of a redrawn bar.
export VOXTOK_PROGRESS=${VOXTOK_PROGRESS:-0}

stage=1              # 1 train, 2 evaluate, 3 summary table
stop_stage=3
data_dir=data        # Kaldi data dirs <data_dir>/{train,dev,test}
teachers_dir=""      # teacher stores for <data_dir>/train (required)
exp=exp/distill_ablation
configs="rvq_tiny dmcodec_lm_tiny dmcodec_lmsm_tiny fusecodec_tiny"
budget=20            # training minutes per model (trainer.max_time)
max_steps=""         # generator updates per model (default: the trainer config's); whichever of
                     # budget and max_steps comes first ends training, the same for every model
n_qs="1 2 8"         # codebooks kept at evaluation
ngpu=0               # GPUs for training (0 = CPU)
max_utts=""          # evaluate on the first N test utterances only
train_args=""        # extra Hydra overrides for every training run
force=false          # re-run steps already marked done

help_message="Usage: $0 --teachers_dir DIR [options]
Options:
  --stage N / --stop_stage N  1 train, 2 evaluate, 3 summary (default $stage..$stop_stage)
  --data_dir DIR       Kaldi data dirs (default $data_dir)
  --teachers_dir DIR   teacher feature stores of <data_dir>/train (required for stage 1)
  --exp DIR            output folder (default $exp)
  --configs \"A B\"      codec configs to compare (default: $configs)
  --budget MIN         training minutes per model (default $budget)
  --max_steps N        generator updates per model (default: trainer config)
  --n_qs \"1 2 8\"       codebooks kept at evaluation
  --ngpu N             GPUs for training (default $ngpu)
  --max_utts N         evaluate on N test utterances
  --train_args ARGS    extra Hydra overrides for training
  --force true|false   redo finished steps"

. utils/parse_options.sh

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

if ! [[ "$budget" =~ ^[0-9]+$ ]] || [ "$budget" -lt 1 ]; then
  echo "$0: --budget must be a whole number of minutes >= 1, got '$budget'" >&2; exit 2
fi
max_time=$(printf "%02d:%02d:%02d:00" $((budget / 1440)) $((budget % 1440 / 60)) $((budget % 60)))
if [ "$ngpu" -gt 0 ]; then trainer="trainer=gpu trainer.devices=$ngpu"; else trainer="trainer=cpu"; fi
[ -n "$max_steps" ] && trainer="$trainer trainer.max_steps=$max_steps"
# dWER needs the benchmark's Whisper module; without it the table has no WER columns.
asr=false
python -c "import voxtok.bench.asr" 2>/dev/null && asr=true
eval_opts="baselines=[] speaker_similarity=true asr=$asr"
[ -n "$max_utts" ] && eval_opts="$eval_opts max_utts=$max_utts"
mkdir -p "$exp"

# step DIR CMD...: run CMD with its output in DIR/log unless DIR/.done exists (and not --force).
step() {
  local dir=$1; shift
  if [ -f "$dir/.done" ] && [ "$force" != true ]; then log "$dir: done before, skipping"; return 0; fi
  mkdir -p "$dir"; rm -f "$dir/.done"
  log "$dir: started, log in $dir/log"
  if ! "$@" > "$dir/log" 2>&1; then log "$dir: FAILED, see $dir/log"; tail -n 5 "$dir/log" >&2; exit 1; fi
  touch "$dir/.done"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  [ -n "$teachers_dir" ] || { echo "$0: give --teachers_dir (see --help)" >&2; exit 2; }
  for cfg in $configs; do
    # shellcheck disable=SC2086
    step "$exp/$cfg" python -m voxtok.recipes.train_codec codec="$cfg" $trainer trainer.max_time="$max_time" \
      train_dir="$data_dir/train" valid_dir="$data_dir/dev" exp_dir="$exp/$cfg" teachers_dir="$teachers_dir" \
      $train_args
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for cfg in $configs; do
    for n_q in $n_qs; do
      # shellcheck disable=SC2086
      step "$exp/$cfg/eval_nq$n_q" python -m voxtok.recipes.eval_codec model="$exp/$cfg/model" \
        test_dir="$data_dir/test" out_dir="$exp/$cfg/eval_nq$n_q" n_q="$n_q" $eval_opts
    done
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  summary=$exp/summary.md
  {
    echo "# Distillation ablation ($budget min per model${max_steps:+, at most $max_steps updates})"
    echo
    header_done=false
    for n_q in $n_qs; do
      for cfg in $configs; do
        table=$exp/$cfg/eval_nq$n_q/table.md
        [ -f "$table" ] || { echo "$0: missing $table (run stage 2)" >&2; exit 1; }
        if [ "$header_done" = false ]; then head -n 2 "$table"; header_done=true; fi
        sed -n 3p "$table"
      done
    done
  } > "$summary"
  cat "$summary"
  log "summary in $summary"
fi
