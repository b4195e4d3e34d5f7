#!/usr/bin/env bash
# VoxTok LibriTTS recipe (ESPnet/Kaldi conventions): numbered stages, --stage/--stop_stage.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=0            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel jobs for data preparation / tokenization
ngpu=0             # GPUs (0 = CPU): training uses DDP over them; tokenize / synth / bench run one worker per GPU,
                   # the other inference stages run on cuda:0
dtype=float32      # inference precision of the non-training stages: float32, bfloat16 or float16 (autocast)
mini=false         # true: synthetic mini corpus + tiny configs (runs on 2 CPU cores)
libritts_root=""   # path to real LibriTTS (holds train-clean-100/, dev-clean/, test-clean/ ...)
tag=""             # experiment name: exp/<tag>/ (default: mini or libritts)
force=false        # true: re-run stages even when they are marked complete
seed=0             # corpus/model seed
data_dir=data      # where the Kaldi data dirs go: <data_dir>/{train,dev,test}
codec=wavtokenizer  # codec to train and tokenize with (stage 1-3)
codec_config=""    # configs/codec/<name>.yaml (default: <codec>_tiny with --mini, else the paper size)
codec_init=""      # fine-tune the codec from this VoxTok / converted checkpoint folder (train_codec init_from)
qwen2_dir=""       # a local Hugging Face Qwen2 folder: the paper-size Flow-Omni fine-tunes from it (flowomni_paper);
                   # without it the paper-size Flow-Omni trains from scratch (flowomni_scratch_paper)
train_args=""      # extra Hydra overrides for every training stage, e.g. "trainer.max_steps=10"
data_args=""       # extra Hydra overrides for stage 0, e.g. "data.num_speakers=8 data.utts_per_speaker=4"
smoke=false        # true (implies --mini): a tiny corpus and a few updates per model (CI)
pretrained_tts=""  # a converted CosyVoice-300M folder (`voxtok convert cosyvoice -o DIR`): the CosyVoice-style TTS
finetune=false     # with --pretrained_tts: stages 9-10 fine-tune its LLM and flow on the corpus (else used as is)
finetune_config=conf/finetune_cosyvoice.yaml  # steps, learning rates and frozen submodules of that fine-tuning
skip_stages=""     # stages left out, e.g. "2 3 5 6 7 8"; later stages leave out what they would take from them
# Wall-clock caps of the training stages with --mini (DD:HH:MM:SS). On CPU the training stages run
# in pairs (codec | s3, vocoder | flowomni, llm | flow), one thread each; the whole run fits 30 minutes.
# Flow-Omni gets the CPU time of the LLM and the flow together: the comparison is at equal budget.
codec_budget=00:00:04:00
s3_budget=00:00:04:00
vocoder_budget=00:00:05:00
flowomni_budget=00:00:05:00
llm_budget=00:00:02:30
flow_budget=00:00:02:30
synth_utts=8       # test utterances synthesized per TTS system with --mini (null: all)

help_message="Usage: $0 [options]
  e.g.: $0 --mini true                      # synthetic corpus, tiny models, CPU, < 30 min
        $0 --libritts_root /data/LibriTTS --ngpu 4
Options:
  --stage N          first stage (default $stage)
  --stop_stage N     last stage (default $stop_stage)
  --nj N             parallel jobs (default $nj)
  --ngpu N           GPUs: training (DDP), one tokenize / synth / bench worker each (default $ngpu)
  --dtype T          inference precision of the non-training stages: float32, bfloat16, float16 (default $dtype)
  --mini true|false  synthetic mini corpus and tiny configs (default $mini)
  --smoke true|false tiny corpus, a few updates per model: checks the plumbing (default $smoke)
  --libritts_root P  real LibriTTS root
  --tag NAME         experiment tag (exp/<tag>)
  --force true|false re-run completed stages (default $force)
  --seed N           seed (default $seed)
  --data_dir DIR     Kaldi data dirs (default $data_dir)
  --codec NAME       acoustic codec to train, tokenize and benchmark (default $codec)
  --codec_config C   codec config name (default: <codec>_tiny with --mini, else paper size)
  --codec_init DIR   stage 2 fine-tunes from this codec folder (e.g. from \`voxtok convert wavtokenizer\`)
  --qwen2_dir DIR    paper-size Flow-Omni starts from this local Qwen2 folder (default: from scratch)
  --pretrained_tts D the CosyVoice-style TTS is this converted folder (\`voxtok convert cosyvoice -o D\`): stage 1
                     adds its CAM++ x-vectors of the corpus, stages 9-10 are skipped, stage 11 synthesizes with it
  --finetune true    with --pretrained_tts: stage 4 adds tokens of its S3 tokenizer, stages 9-10 fine-tune its LLM
                     and flow on the corpus (--finetune_config, default $finetune_config); stage 11 uses them
  --skip_stages L    leave the stages of list L out (and what later stages would take from them), e.g. \"2 3 5\"
  --train_args ARGS  extra Hydra overrides for training stages
  --data_args ARGS   extra Hydra overrides for the corpus/data stage
  --*_budget T       wall-clock cap of a training stage with --mini (DD:HH:MM:SS)
Stages:
  0  data        corpus + data/{train,dev,test} (Kaldi data dirs)
  1  speakers    speaker embeddings (utt2embedding, spk2embedding) per split (+ CAM++ ones: --pretrained_tts)
  2  codec       train the acoustic codec (resumes from its last checkpoint)
  3  s3          train the supervised semantic (S3) tokenizer (CTC)
  4  tokenize    token stores of train/dev/test for the codec and S3 (+ the pretrained S3's: --finetune)
  5  teachers    LM (MiniLM) and semantic (S3 encoder) teacher features, CTC-aligned
  6  codec_eval  codec vs Codec2 on the test speakers; S3 CER and codebook usage
  7  vocoder     train the mel vocoder
  8  flowomni    train the Flow-Omni continuous-token TTS
  9  llm         train the text-to-token LLM on S3 tokens (--pretrained_tts: fine-tune it, or skipped)
  10 flow        train the flow-matching decoder on S3 tokens (--pretrained_tts: fine-tune it, or skipped)
  11 synth       clone each test speaker (CosyVoice-style and Flow-Omni) + vocoder resynthesis
  12 tts_eval    WER, speaker similarity, robustness and RTF of the TTS systems
  13 bench       DASB-style benchmark of the tokenizers and classical codecs
  14 report      report page (tables, plots, audio) and a one-screen summary"

. utils/parse_options.sh

for n in $skip_stages; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "$0: --skip_stages takes stage numbers, got '$n'" >&2; exit 2; }
done
if [ "$finetune" = true ] && [ -z "$pretrained_tts" ]; then
  echo "$0: --finetune true fine-tunes the folder of --pretrained_tts DIR: give it" >&2; exit 2
fi
if [ -n "$pretrained_tts" ]; then
  [ -f "$pretrained_tts/tts/cosyvoice.yaml" ] && [ -f "$pretrained_tts/speaker/campplus.onnx" ] || {
    echo "$0: --pretrained_tts $pretrained_tts is not a folder of \`voxtok convert cosyvoice\` (no tts/cosyvoice.yaml" \
      "and speaker/campplus.onnx)" >&2; exit 2; }
  if [ "$finetune" = true ] && [ ! -f "$finetune_config" ]; then
    echo "$0: --finetune_config $finetune_config: no such file" >&2; exit 2
  fi
fi

# The benchmark with --mini: a subset and short probe / LM budgets, the same for every system.
bench_args="max_test_utts=12 max_train_utts=120 probe.asr_steps=200 probe.speaker_steps=150 lm_model.steps=200 swuggy_words=16"
eval_args="max_utts=40"
if [ "$smoke" = true ]; then
  mini=true
  [ -n "$tag" ] || tag=smoke
  data_args="data.num_speakers=8 data.utts_per_speaker=4 data.num_dev_speakers=1 data.num_test_speakers=2 $data_args"
  # A few updates per model, no validation: the point is that every stage runs and hands over.
  train_args="trainer.max_steps=4 trainer.val_every_n_steps=1000 trainer.checkpoint_every_n_steps=2 $train_args"
  synth_utts=2
  bench_args="asr=false probe.asr_steps=4 probe.speaker_steps=4 lm_model.steps=4 swuggy_words=4 max_test_utts=4 max_train_utts=8"
fi
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
if [ "$mini" != true ]; then bench_args=""; eval_args=""; synth_utts=null; fi

declare -A paper_config=([wavtokenizer]=wavtokenizer_75_paper)
if [ -z "$codec_config" ]; then
  if [ "$mini" = true ]; then codec_config=${codec}_tiny; else codec_config=${paper_config[$codec]:-${codec}_paper}; fi
fi
if [ "$mini" = true ]; then
  size=tiny; s3_config=s3_tiny; vocoder_config=vocoder_tiny; llm_config=llm_tiny; flow_config=flow_tiny
  flowomni_config=flowomni_tiny
else
  size=paper; s3_config=s3_v1_paper; vocoder_config=vocoder_paper; llm_config=llm_300m_paper
  flow_config=flow_300m_paper; flowomni_config=flowomni_scratch_paper
  # flowomni_paper reads the Qwen2 folder from QWEN2_DIR (configs/tts/flowomni_paper.yaml)
  if [ -n "$qwen2_dir" ]; then flowomni_config=flowomni_paper; export QWEN2_DIR=$qwen2_dir; fi
fi
if [ "$ngpu" -gt 0 ]; then
  trainer="trainer=gpu trainer.devices=$ngpu"; device=cuda:0
else
  trainer="trainer=cpu"; device=cpu
fi
# where and how the inference stages run (workers of tokenize / synth / bench: ngpu=)
infer="device=$device dtype=$dtype"
# budget NAME: the trainer overrides of one training stage (wall-clock cap with --mini; one thread
# when CPU stages run in pairs)
budget() {
  local cap=""
  if [ "$mini" = true ]; then local var="${1}_budget"; cap="trainer.max_time=${!var}"; fi
  [ "$ngpu" -eq 0 ] && cap="$cap trainer.threads=1"
  echo "$trainer $cap $train_args"
}
codec_exp=$exp/codec_$codec
codec_init_args=""
[ -n "$codec_init" ] && codec_init_args="init_from=$codec_init"
s3_exp=$exp/s3
tts_exp=$exp/tts
# --pretrained_tts: the converted models take 192-d CAM++ x-vectors and the codes of their own S3 tokenizer,
# so the corpus gets both beside the resemblyzer store and the corpus-trained S3's tokens (which the
# vocoder, Flow-Omni and evaluation stages keep using).
campplus_dir=$dump/spk_campplus
pretrained_tokens=$dump/tokens/s3_pretrained
finetune_args="finetune=$finetune_config"
[ "$mini" = true ] && finetune_args="$finetune_args tts.data.num_workers=0"  # the CPU runs of --mini
synth_args="max_utts=$synth_utts"
[ "$synth_utts" = null ] && synth_args=""

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

# skipped N: stage N is in --skip_stages; in_range N: stage N is within --stage..--stop_stage
skipped() { [[ " $skip_stages " == *" $1 "* ]]; }
in_range() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
# unless_skipped N WHAT CMD...: runs CMD, or says that WHAT is left out because stage N is skipped
unless_skipped() {
  local n=$1 what=$2; shift 2
  if skipped "$n"; then echo "$what: left out (stage $n is in --skip_stages)"; return 0; fi
  "$@"
}

# pair A B: run two `run_stage ...` command strings side by side on CPU (one after the other with
# GPUs, where each training stage takes every GPU); fails if either fails.
pair() {
  if [ "$ngpu" -gt 0 ]; then eval "$1" && eval "$2"; return; fi
  eval "$1" & local a=$!
  eval "$2" & local b=$!
  local status=0
  wait "$a" || status=1
  wait "$b" || status=1
  [ "$status" -eq 0 ] || { log "a training stage failed, see the logs above"; exit 1; }
}

# run_stage N NAME CMD...: runs CMD with its output in exp/<tag>/stageN_NAME/log, unless the stage
# is marked complete (.done) and --force is false. A killed stage has no .done and re-runs.
run_stage() {
  local n=$1 name=$2; shift 2
  in_range "$n" || return 0
  if skipped "$n"; then log "stage $n ($name): skipped (--skip_stages)"; return 0; fi
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

run_stage 1 speakers python -m voxtok.recipes.speaker_embeddings data_dir="$data" "splits=[train,dev,test]" \
  out_dir="$dump/spk" nj="$nj" $infer
if [ -n "$pretrained_tts" ]; then
  run_stage 1 speakers_campplus python -m voxtok.recipes.speaker_embeddings data_dir="$data" \
    "splits=[train,dev,test]" out_dir="$campplus_dir" nj="$nj" $infer encoder="campplus:$pretrained_tts/speaker/campplus.onnx"
fi

# shellcheck disable=SC2016
pair 'run_stage 2 codec python -m voxtok.recipes.train_codec codec="$codec_config" $(budget codec) \
        train_dir="$data/train" valid_dir="$data/dev" exp_dir="$codec_exp" $codec_init_args' \
     'run_stage 3 s3 python -m voxtok.recipes.train_s3 codec="$s3_config" $(budget s3) \
        train_dir="$data/train" valid_dir="$data/dev" exp_dir="$s3_exp"'

tokenize_all() {
  unless_skipped 2 "codec tokens" python -m voxtok.recipes.tokenize model="$codec_exp/model" data_dir="$data" \
    out_dir="$dump/tokens/$codec" nj="$nj" ngpu="$ngpu" dtype="$dtype" &&
  unless_skipped 3 "S3 tokens" python -m voxtok.recipes.tokenize model="$s3_exp/model" data_dir="$data" \
    out_dir="$dump/tokens/s3" nj="$nj" ngpu="$ngpu" dtype="$dtype"
}
run_stage 4 tokenize tokenize_all
if [ -n "$pretrained_tts" ] && [ "$finetune" = true ]; then
  run_stage 4 tokenize_pretrained python -m voxtok.recipes.tokenize model="$pretrained_tts/s3/model" data_dir="$data" \
    out_dir="$pretrained_tokens" nj="$nj" ngpu="$ngpu" dtype="$dtype"
fi

run_stage 5 teachers python -m voxtok.recipes.extract_teachers data_dir="$data" "splits=[train,dev,test]" \
  out_dir="$dump/teachers" aligner.s3_model="$s3_exp/model" sm.s3_model="$s3_exp/model" nj="$nj" \
  device="$device" compute_dtype="$dtype"

evaluate_tokenizers() {
  # shellcheck disable=SC2086
  python -m voxtok.recipes.eval_codec model="$codec_exp/model" test_dir="$data/test" out_dir="$codec_exp/eval" \
    nj="$nj" $infer $eval_args &&
  python -m voxtok.recipes.eval_s3 model="$s3_exp/model" test_dir="$data/test" out_dir="$s3_exp/eval" $infer
}
run_stage 6 codec_eval evaluate_tokenizers

# shellcheck disable=SC2016
pair 'run_stage 7 vocoder python -m voxtok.recipes.train_vocoder tts="$vocoder_config" $(budget vocoder) \
        train_dir="$data/train" valid_dir="$data/dev" exp_dir="$tts_exp/vocoder"' \
     'run_stage 8 flowomni python -m voxtok.recipes.train_tts tts="$flowomni_config" $(budget flowomni) \
        data_dir="$data" embedding_dir="$dump/spk" exp_dir="$tts_exp/flowomni"'

if [ -z "$pretrained_tts" ]; then
  # shellcheck disable=SC2016
  pair 'run_stage 9 llm python -m voxtok.recipes.train_tts tts="$llm_config" $(budget llm) data_dir="$data" \
          token_dir="$dump/tokens/s3" embedding_dir="$dump/spk" exp_dir="$tts_exp/llm"' \
       'run_stage 10 flow python -m voxtok.recipes.train_tts tts="$flow_config" $(budget flow) data_dir="$data" \
          token_dir="$dump/tokens/s3" embedding_dir="$dump/spk" exp_dir="$tts_exp/flow"'
elif [ "$finetune" = true ]; then
  # The converted LLM and flow (architecture, weights, text frontend from there), fine-tuned with the blocks
  # of $finetune_config on the corpus's pretrained-S3 tokens and CAM++ x-vectors; --train_args win.
  # shellcheck disable=SC2016
  pair 'run_stage 9 llm_finetune python -m voxtok.recipes.train_tts tts=llm_cosyvoice_300m $finetune_args \
          $(budget llm) init_from="$pretrained_tts/tts/llm/model" data_dir="$data" token_dir="$pretrained_tokens" \
          embedding_dir="$campplus_dir" exp_dir="$tts_exp/llm_finetune"' \
       'run_stage 10 flow_finetune python -m voxtok.recipes.train_tts tts=flow_cosyvoice_300m $finetune_args \
          $(budget flow) init_from="$pretrained_tts/tts/flow/model" data_dir="$data" token_dir="$pretrained_tokens" \
          embedding_dir="$campplus_dir" exp_dir="$tts_exp/flow_finetune"'
else
  for n in 9 10; do
    in_range "$n" && log "stage $n: skipped: the CosyVoice-style TTS is --pretrained_tts $pretrained_tts as it is" \
      "(--finetune true fine-tunes it on the corpus)"
  done
fi

# write_manifests: the pipeline manifests (voxtok/tts/manifest.py) that synthesis and the demo load;
# the writer stores paths relative to the manifest so exp/ can be moved.
write_manifests() {
  if [ -z "$pretrained_tts" ]; then
    python -m voxtok.cli tts manifest --model cosyvoice -o "$tts_exp/cosyvoice.yaml" llm="$tts_exp/llm/model" \
      flow="$tts_exp/flow/model" vocoder="$tts_exp/vocoder/model" tokenizer="$s3_exp/model" speakers="$dump/spk/train"
  else
    # The converted folder's parts (its LLM and flow, or their fine-tuned copies), with the corpus's
    # training speakers (CAM++ x-vectors) as the stored voices of `sft` mode.
    local llm="$pretrained_tts/tts/llm/model" flow="$pretrained_tts/tts/flow/model"
    if [ "$finetune" = true ]; then llm="$tts_exp/llm_finetune/model"; flow="$tts_exp/flow_finetune/model"; fi
    python -m voxtok.cli tts manifest --model cosyvoice -o "$tts_exp/cosyvoice.yaml" llm="$llm" flow="$flow" \
      vocoder="$pretrained_tts/tts/vocoder/model" tokenizer="$pretrained_tts/s3/model" speakers="$campplus_dir/train" \
      speaker_encoder="$pretrained_tts/speaker/campplus.onnx"
  fi &&
  unless_skipped 8 "the Flow-Omni manifest" python -m voxtok.cli tts manifest --model flowomni \
    -o "$tts_exp/flowomni.yaml" flowomni="$tts_exp/flowomni/model" vocoder="$tts_exp/vocoder/model" \
    speakers="$dump/spk/train"
}
synthesize() {
  write_manifests &&
  # shellcheck disable=SC2086
  python -m voxtok.recipes.synth_tts pipeline="$tts_exp/cosyvoice.yaml" test_dir="$data/test" \
    out_dir="$tts_exp/synth_cosyvoice" resynth=true nj="$nj" ngpu="$ngpu" dtype="$dtype" $synth_args &&
  # shellcheck disable=SC2086
  unless_skipped 8 "Flow-Omni synthesis" python -m voxtok.recipes.synth_tts pipeline="$tts_exp/flowomni.yaml" \
    test_dir="$data/test" out_dir="$tts_exp/synth_flowomni" nj="$nj" ngpu="$ngpu" dtype="$dtype" $synth_args
}
run_stage 11 synth synthesize

tts_systems="ground_truth: $data/test, vocoder_resynthesis: $tts_exp/synth_cosyvoice/resynth/data"
tts_systems="$tts_systems, cosyvoice: $tts_exp/synth_cosyvoice/data"
skipped 8 || tts_systems="$tts_systems, flowomni: $tts_exp/synth_flowomni/data"
run_stage 12 tts_eval python -m voxtok.recipes.eval_tts test_dir="$data/test" \
  prompts="$tts_exp/synth_cosyvoice/prompts" out_dir="$tts_exp/eval" $infer "systems={$tts_systems}"

bench_systems="identity,codec2_1200,codec2_3200,opus_6k,opus_12k"
skipped 2 || bench_systems="$bench_systems,\"vtk:$codec_exp/model\""
skipped 3 || bench_systems="$bench_systems,\"vtk:$s3_exp/model\""
# shellcheck disable=SC2086
run_stage 13 bench python -m voxtok.recipes.bench test_dir="$data/test" train_dir="$data/train" \
  out_dir="$exp/bench" nj="$nj" ngpu="$ngpu" dtype="$dtype" $bench_args "systems=[$bench_systems]"

run_stage 14 report python -m voxtok.recipes.report exp_dir="$exp"

log "finished stages $stage..$stop_stage for $exp"
[ "$stop_stage" -ge 14 ] && [ -f "$exp/report/summary.txt" ] && cat "$exp/report/summary.txt"
exit 0
