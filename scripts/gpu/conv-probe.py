# Diagnostic, not part of matq: PyTorch on the GPU host times one conv layer's pieces (forward, forward on a quarter of the
# output channels, weight gradient in full and for those channels, data gradient, both, the gather of the selected
# output-gradient channels) in NCHW and channels-last, to locate where EfQAT's partial backward loses to the ideal.
# Usage on the GPU host: /opt/torch/.venv/bin/python scripts/gpu/conv-probe.py cuda|cpu (output: docs/results/logs/conv-probe.log).
import torch, time, sys
torch.backends.cudnn.benchmark = True
dev = sys.argv[1] if len(sys.argv) > 1 else 'cuda'
sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)
def t(f, n=30 if dev == 'cuda' else 10):
    for _ in range(5): f()
    sync(); s = time.perf_counter()
    for _ in range(n): f()
    sync(); return (time.perf_counter() - s) / n * 1e3
B = 128 if dev == 'cuda' else 64
shapes = [(256,256,28,1),(256,512,28,2),(512,512,14,1),(512,1024,14,2),(1024,1024,7,1)] if dev == 'cuda' else [(64,64,28,1),(64,128,28,2),(128,128,14,1),(128,256,14,2),(256,256,7,1)]
for fmt in [torch.contiguous_format, torch.channels_last]:
  for (cin, cout, hw, stride) in shapes:
    x = torch.randn(B, cin, hw, hw, device=dev).to(memory_format=fmt)
    w = torch.randn(cout, cin, 3, 3, device=dev).to(memory_format=fmt)
    y = torch.nn.functional.conv2d(x, w, stride=stride, padding=1)
    g = torch.randn_like(y)
    S = cout // 4
    rows = torch.randperm(cout, device=dev)[:S].sort().values
    ws = w[rows].contiguous(memory_format=fmt)
    fw = t(lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=1))
    fs = t(lambda: torch.nn.functional.conv2d(x, ws, stride=stride, padding=1))
    wg = t(lambda: torch.ops.aten.convolution_backward(g, x, w, None, [stride]*2, [1,1], [1,1], False, [0,0], 1, [False, True, False]))
    dg = t(lambda: torch.ops.aten.convolution_backward(g, x, w, None, [stride]*2, [1,1], [1,1], False, [0,0], 1, [True, False, False]))
    both = t(lambda: torch.ops.aten.convolution_backward(g, x, w, None, [stride]*2, [1,1], [1,1], False, [0,0], 1, [True, True, False]))
    gs = g.index_select(1, rows).contiguous(memory_format=fmt)
    wgs = t(lambda: torch.ops.aten.convolution_backward(gs, x, ws, None, [stride]*2, [1,1], [1,1], False, [0,0], 1, [False, True, False]))
    gath = t(lambda: g.index_select(1, rows))
    print(f"{'NHWC' if fmt==torch.channels_last else 'NCHW'} {cin}->{cout} {hw}x{hw} s{stride}: fwd {fw:.3f} fwdS {fs:.3f} ({fs/fw:.2f})  wgrad {wg:.3f} wgradS {wgs:.3f} ({wgs/wg:.2f})  dgrad {dg:.3f}  both {both:.3f}  conv-bwd ratio {both/(dg+wgs+gath):.2f}  gather {gath:.3f}")
