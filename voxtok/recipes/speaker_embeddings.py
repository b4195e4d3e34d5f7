"""Speaker embeddings (resemblyzer d-vectors, or CosyVoice's CAM++) for a data dir: the TTS conditioning stage.

Example:
    python -m voxtok.recipes.speaker_embeddings data_dir=data/train out_dir=dump/spk/train nj=2
    python -m voxtok.recipes.speaker_embeddings data_dir=data out_dir=dump/spk "splits=[train,dev,test]"
    python -m voxtok.recipes.speaker_embeddings data_dir=data/train out_dir=dump/campplus/train \
        encoder=campplus:pretrained/CosyVoice-300M/campplus.onnx
    python -m voxtok.recipes.speaker_embeddings data_dir=data/train out_dir=dump/spk/train device=cuda dtype=bfloat16

With `splits`, data_dir/<split> goes to out_dir/<split> for each split in one process (the model
loads once). `encoder` is resemblyzer (256-d, the default) or campplus:FILE (192-d x-vectors from
campplus.onnx or a CosyVoice release folder). Writes <out_dir>/utt2embedding and <out_dir>/spk2embedding
(shard stores of float32 [dim]); see
`voxtok.tts.speaker`. A killed run resumes: utterances already stored are skipped.
"""

from __future__ import annotations

from omegaconf import DictConfig

from voxtok.recipes import recipe_main


@recipe_main("speaker_embeddings")
def main(cfg: DictConfig) -> None:
    from voxtok.tts.speaker import compute_embeddings

    from pathlib import Path

    pairs = ([(Path(cfg.data_dir) / s, Path(cfg.out_dir) / s) for s in cfg.splits] if cfg.get("splits")
             else [(cfg.data_dir, cfg.out_dir)])
    for data_dir, out_dir in pairs:
        compute_embeddings(data_dir, out_dir, nj=int(cfg.nj), batch_size=int(cfg.batch_size), device=str(cfg.device),
                           encoder=str(cfg.get("encoder") or "resemblyzer"), dtype=str(cfg.dtype))


if __name__ == "__main__":
    main()
