import time, torch, yaml
from voxtok.tts.train import build_tts_model
cfg = yaml.safe_load(open('configs/tts/flow_300m_paper.yaml'))
m = build_tts_model('flow', cfg['model']).cuda()
opt = torch.optim.AdamW(m.parameters(), 1e-4)
B, N = 16, 500  # 10 s utterances
tok = torch.randint(0, 4096, (B, N), device='cuda')
tl = torch.randint(250, 501, (B,), device='cuda'); tl[0] = N
ml = m.frames_for_tokens(tl)
mel = torch.randn(B, 80, int(ml.max()), device='cuda') - 5
batch = dict(speech_tokens=tok, token_lengths=tl, mel=mel, mel_lengths=ml, spk_emb=torch.randn(B, 256, device='cuda'))
for i in range(6):
    torch.cuda.synchronize(); t0 = time.time()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        loss, st = m.forward_loss(batch)
    opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize(); print('step', i, round(loss.item(), 3), round(time.time() - t0, 3), flush=True)
print('peak GiB', torch.cuda.max_memory_allocated() / 2**30)
m.eval()
for bs in (1, 8):
    torch.cuda.synchronize(); t0 = time.time()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        out, lens = m.synthesize(tok[:bs], tl[:bs], batch['spk_emb'][:bs], seed=0)
    torch.cuda.synchronize(); print('synth bs', bs, out.shape, round(time.time() - t0, 3), torch.isfinite(out).all().item())
out32, _ = m.synthesize(tok[:2], tl[:2], batch['spk_emb'][:2], seed=0)
single, _ = m.synthesize(tok[1:2, :int(tl[1])], None, batch['spk_emb'][1:2], seed=1)
print('fp32 batch==single maxdiff', (single[0] - out32[1, :, :single.shape[-1]]).abs().max().item())
# chunk stream
t0 = time.time(); prev = None
for s, e in m.chunk_bounds(N, 25)[:4]:
    c, cl = m.synthesize_chunk(tok[:1], None, batch['spk_emb'][:1], s, e, prev_mel=prev, seed=0); prev = c
    torch.cuda.synchronize(); print('chunk', s, e, cl.item(), round(time.time() - t0, 3))
