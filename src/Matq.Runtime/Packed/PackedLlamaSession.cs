// Contract: the forward pass of a PackedLlamaModel with an fp32 KV cache, no TorchSharp: Forward(ids) runs the ids at
// positions Length..Length+T−1 and returns their logits; tokens go through in chunks of at most MaxBatch (prefill: the
// GEMM kernels, weights read once per chunk), a single token through the GEMV kernels (decode). Math as the TorchSharp
// LlamaForCausalLM: embed (× √hidden for Gemma); pre-norm blocks h += o(attn(rms(h))), h += down(act(gate(x))·up(x))
// with x = rms(h), or Gemma's sandwich h += rms(o(attn(rms(h)))), h += rms(mlp(rms(h))); act SiLU or tanh GELU;
// RMSNorm x·rsqrt(mean(x²) + eps)·w (w = 1 + w' folded at load for Gemma); q/k RMSNorm per head (Qwen 3, Gemma 3) before
// rotate_half RoPE of the layer's rope; causal grouped-query attention softmax(cap·tanh(q·k·scale / cap)) (scale from
// query_pre_attn_scalar, the soft-cap for Gemma 2), limited on sliding-window layers to keys j with i − W < j ≤ i;
// final norm, head, final soft-cap.
// Cache layout: K and V per layer [kvHeads, ContextLength, HeadDim]. A sequence longer than ContextLength is refused.
// Activations: Fp32 everywhere (the default and the exact mode), or Int8 — each packed linear's input is quantized per
// row (token) to int8: single-token steps (decode, and the head) run the integer GEMV, prefill chunks the integer GEMM
// (GemmInt8Simd), whose rows equal the GEMV's bit for bit, so Int8 prefill gives the logits of Int8 token-by-token
// decode; its error against Fp32 is that of the activation rounding (half an activation step per value).
using System.Numerics.Tensors;
using Matq.Kernels.Simd;
using Matq.Runtime.Models;

namespace Matq.Runtime.Packed;

/// <summary>Activations the packed linears consume (decode GEMVs and prefill GEMMs).</summary>
public enum PackedActivations { Fp32, Int8 }

public sealed class PackedLlamaSession
{
    /// <summary>Most tokens run through the layers at once (rows of the prefill GEMM).</summary>
    public const int MaxBatch = 32;

    private readonly PackedLlamaModel _m;
    private readonly float[][] _k, _v;
    private readonly float[] _h, _x, _q, _kNew, _vNew, _att, _gate, _up, _o, _swiglu;
    private float[] _scores;   // [work items, start + t] of the current attention call, grown on demand
    // the current chunk's rows: row i is the token at position _rowPos[i] of session _rowSession[i] (this session's
    // consecutive positions in a prefill; one row per sequence in a batched decode step)
    private readonly PackedLlamaSession[] _rowSession = new PackedLlamaSession[MaxBatch];
    private readonly int[] _rowPos = new int[MaxBatch];
    private readonly int _hidden, _heads, _kvHeads, _d, _inter, _vocab;

    public PackedLlamaModel Model => _m;
    /// <summary>Tokens in the cache.</summary>
    public int Length { get; private set; }
    public int ContextLength { get; }
    /// <summary>Worker threads for the kernels and attention; −1 = all cores.</summary>
    public int Threads { get; }
    public PackedActivations Activations { get; }
    private readonly Int8Buffer? _int8;

    public PackedLlamaSession(PackedLlamaModel model, int? contextLength = null, int threads = -1, PackedActivations activations = PackedActivations.Fp32)
    {
        Activations = activations;
        _int8 = activations == PackedActivations.Int8 ? new Int8Buffer() : null;
        ArgumentNullException.ThrowIfNull(model);
        if (threads == 0 || threads < -1) throw new MatqException($"--threads {threads} is out of range: 1 or more, or -1 for all cores");
        _m = model;
        var c = model.Config;
        ContextLength = Math.Min(contextLength ?? model.MaxPositions, model.MaxPositions);
        if (ContextLength < 1) throw new MatqException($"context length {contextLength} must be at least 1");
        Threads = threads;
        _hidden = c.HiddenSize; _heads = c.NumHeads; _kvHeads = c.NumKvHeads; _d = c.HeadDim; _inter = c.IntermediateSize; _vocab = c.VocabSize;
        _k = new float[c.NumLayers][];
        _v = new float[c.NumLayers][];
        for (int l = 0; l < c.NumLayers; l++)
        {
            _k[l] = new float[(long)_kvHeads * ContextLength * _d];
            _v[l] = new float[(long)_kvHeads * ContextLength * _d];
        }
        _h = new float[MaxBatch * _hidden];
        _x = new float[MaxBatch * _hidden];
        _o = new float[MaxBatch * _hidden];
        _q = new float[MaxBatch * c.QDim];
        _att = new float[MaxBatch * c.QDim];
        _kNew = new float[MaxBatch * c.KvDim];
        _vNew = new float[MaxBatch * c.KvDim];
        _gate = new float[MaxBatch * _inter];
        _up = new float[MaxBatch * _inter];
        _swiglu = new float[MaxBatch * _inter];
        _scores = [];
    }

    /// <summary>Bytes of the KV cache (fp32, allocated for ContextLength tokens).</summary>
    public long CacheBytes => _k.Sum(a => 4L * a.LongLength) * 2;

    /// <summary>Forgets every cached token.</summary>
    public void Reset() => Length = 0;

    /// <summary>
    /// Runs <paramref name="ids"/> at positions Length.. and appends them to the cache. Returns logits [T, vocab] when
    /// <paramref name="allLogits"/>, else [vocab] of the last token (the head runs on that token only).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> ids, bool allLogits = false)
    {
        var logits = new float[(allLogits ? ids.Length : 1) * (long)_vocab];
        Forward(ids, logits, allLogits);
        return logits;
    }

    /// <summary>As <see cref="Forward(ReadOnlySpan{int}, bool)"/>, writing the logits into <paramref name="logits"/> (no allocation per step).</summary>
    public void Forward(ReadOnlySpan<int> ids, Span<float> logits, bool allLogits = false)
    {
        if (ids.IsEmpty) throw new ArgumentException("no tokens to run", nameof(ids));
        if (logits.Length != (allLogits ? ids.Length : 1) * (long)_vocab)
            throw new ArgumentException($"logits must hold {(allLogits ? ids.Length : 1)}×{_vocab} values", nameof(logits));
        if (Length + ids.Length > ContextLength)
            throw new MatqException($"a sequence of {Length + ids.Length} tokens exceeds the context of {ContextLength} tokens; shorten the prompt (or --max-tokens)");
        foreach (int id in ids)
            if ((uint)id >= (uint)_vocab)
                throw new MatqException($"token id {id} is outside the vocabulary (0..{_vocab - 1}); the tokenizer does not match the model");
        for (int s = 0; s < ids.Length; s += MaxBatch)
        {
            int t = Math.Min(MaxBatch, ids.Length - s);
            bool last = s + t == ids.Length;
            Chunk(ids.Slice(s, t));
            if (allLogits) HeadRows(0, t, logits.Slice((int)((long)s * _vocab), t * _vocab));
            else if (last) HeadRows(t - 1, 1, logits);
        }
    }

    // Runs t ≤ MaxBatch tokens of this session through every layer; leaves the last layer's hidden states in _h [t, hidden].
    private void Chunk(ReadOnlySpan<int> ids)
    {
        for (int i = 0; i < ids.Length; i++) (_rowSession[i], _rowPos[i]) = (this, Length + i);
        Rows(ids);
        Length += ids.Length;
    }

    /// <summary>
    /// One decode step for several sequences at once: <paramref name="sessions"/>[i] (distinct sessions of one model) takes
    /// <paramref name="ids"/>[i] at its own next position. The packed weights are read once for all of them (each linear
    /// runs as one GEMM of B rows, as in a prefill) and each row attends to its own cache; <paramref name="logits"/>
    /// receives [B, vocab]. The same tokens as B separate <see cref="Forward(ReadOnlySpan{int}, Span{float}, bool)"/> calls
    /// up to the GEMM's summation order. Batched serving runs its sequences' steps through this.
    /// </summary>
    public static void DecodeBatch(IReadOnlyList<PackedLlamaSession> sessions, ReadOnlySpan<int> ids, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(sessions);
        int b = sessions.Count;
        if (b < 1 || b > MaxBatch) throw new ArgumentException($"a batch holds 1..{MaxBatch} sessions, not {b}", nameof(sessions));
        if (ids.Length != b) throw new ArgumentException($"{b} sessions need {b} ids, not {ids.Length}", nameof(ids));
        var first = sessions[0];
        if (logits.Length != (long)b * first._vocab) throw new ArgumentException($"logits must hold {b}×{first._vocab} values", nameof(logits));
        for (int i = 0; i < b; i++)
        {
            var s = sessions[i];
            if (!ReferenceEquals(s._m, first._m)) throw new ArgumentException("a batch's sessions must share one model", nameof(sessions));
            for (int j = 0; j < i; j++)
                if (ReferenceEquals(sessions[j], s)) throw new ArgumentException("a session appears twice in the batch", nameof(sessions));
            if (s.Length + 1 > s.ContextLength)
                throw new MatqException($"a sequence of {s.Length + 1} tokens exceeds the context of {s.ContextLength} tokens; shorten the prompt (or --max-tokens)");
            if ((uint)ids[i] >= (uint)first._vocab)
                throw new MatqException($"token id {ids[i]} is outside the vocabulary (0..{first._vocab - 1}); the tokenizer does not match the model");
            (first._rowSession[i], first._rowPos[i]) = (s, s.Length);
        }
        first.Rows(ids);
        foreach (var s in sessions) s.Length++;
        first.HeadRows(0, b, logits);
    }

    // The rows set in _rowSession/_rowPos, through every layer with this session's buffers; each row's K/V go to its own
    // session's cache at its position.
    private void Rows(ReadOnlySpan<int> ids)
    {
        int t = ids.Length, h = _hidden;
        for (int i = 0; i < t; i++) _m.Embed(ids[i], _h.AsSpan(i * h, h));
        float eps = (float)_m.Config.RmsNormEps;
        for (int l = 0; l < _m.Layers.Count; l++)
        {
            var layer = _m.Layers[l];
            RmsNorm(_h, _x, t, layer.InputNorm, eps);
            layer.Q.Forward(_x, t, _q, Threads, _int8);
            layer.K.Forward(_x, t, _kNew, Threads, _int8);
            layer.V.Forward(_x, t, _vNew, Threads, _int8);
            if (layer.QNorm is not null) RmsNorm(_q, _q, t * _heads, layer.QNorm, eps, _d);
            if (layer.KNorm is not null) RmsNorm(_kNew, _kNew, t * _kvHeads, layer.KNorm, eps, _d);
            var (cos, sin) = layer.LocalRope ? (_m.LocalRopeCos, _m.LocalRopeSin) : (_m.RopeCos, _m.RopeSin);
            for (int i = 0; i < t; i++)
            {
                var (owner, pos) = (_rowSession[i], _rowPos[i]);
                Rope(_q.AsSpan(i * _heads * _d, _heads * _d), _heads, pos, cos, sin);
                Rope(_kNew.AsSpan(i * _kvHeads * _d, _kvHeads * _d), _kvHeads, pos, cos, sin);
                for (int kh = 0; kh < _kvHeads; kh++)
                {
                    long at = ((long)kh * owner.ContextLength + pos) * _d;
                    _kNew.AsSpan((i * _kvHeads + kh) * _d, _d).CopyTo(owner._k[l].AsSpan((int)at, _d));
                    _vNew.AsSpan((i * _kvHeads + kh) * _d, _d).CopyTo(owner._v[l].AsSpan((int)at, _d));
                }
            }
            Attention(l, t);
            layer.O.Forward(_att, t, _o, Threads, _int8);
            bool sandwich = layer.PreFeedforwardNorm is not null && layer.PostFeedforwardNorm is not null;
            if (sandwich) RmsNorm(_o, _o, t, layer.PostNorm, eps);
            TensorPrimitives.Add(_h.AsSpan(0, t * h), _o.AsSpan(0, t * h), _h.AsSpan(0, t * h));

            RmsNorm(_h, _x, t, sandwich ? layer.PreFeedforwardNorm! : layer.PostNorm, eps);
            layer.Gate.Forward(_x, t, _gate, Threads, _int8);
            layer.Up.Forward(_x, t, _up, Threads, _int8);
            var g = _gate.AsSpan(0, t * _inter);
            if (_m.Config.Activation == Activation.GeluTanh) Geglu(g, _up.AsSpan(0, t * _inter), _swiglu.AsSpan(0, t * _inter));
            else Swiglu(g, _up.AsSpan(0, t * _inter), _swiglu.AsSpan(0, t * _inter));
            layer.Down.Forward(_gate, t, _o, Threads, _int8);
            if (sandwich) RmsNorm(_o, _o, t, layer.PostFeedforwardNorm!, eps);
            TensorPrimitives.Add(_h.AsSpan(0, t * h), _o.AsSpan(0, t * h), _h.AsSpan(0, t * h));
        }
    }

    // silu(g)·u = g·σ(g)·u, in place in g (σ into the scratch s).
    private static void Swiglu(Span<float> g, ReadOnlySpan<float> u, Span<float> s)
    {
        TensorPrimitives.Sigmoid(g, s);
        TensorPrimitives.Multiply(g, s, g);
        TensorPrimitives.Multiply(g, u, g);
    }

    // gelu_tanh(g)·u = ½·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))·u, in place in g (the tanh argument in the scratch s).
    private static void Geglu(Span<float> g, ReadOnlySpan<float> u, Span<float> s)
    {
        const float k = 0.7978845608028654f, c = 0.044715f;
        for (int i = 0; i < g.Length; i++) { float x = g[i]; s[i] = k * (x + c * x * x * x); }
        TensorPrimitives.Tanh(s, s);
        for (int i = 0; i < g.Length; i++) g[i] = 0.5f * g[i] * (1f + s[i]) * u[i];
    }

    // tanh(x / cap)·cap in place (attention-logit and final-logit soft-caps).
    private static void SoftCap(Span<float> x, float cap)
    {
        TensorPrimitives.Multiply(x, 1f / cap, x);
        TensorPrimitives.Tanh(x, x);
        TensorPrimitives.Multiply(x, cap, x);
    }

    // Final norm and head for rows [r0, r0+n) of _h into dst [n, vocab].
    private void HeadRows(int r0, int n, Span<float> dst)
    {
        var normed = _x.AsSpan(0, n * _hidden);   // _x is free once the layers are done
        RmsNorm(_h.AsSpan(r0 * _hidden, n * _hidden), normed, n, _m.FinalNorm, (float)_m.Config.RmsNormEps);
        _m.Head.Forward(normed, n, dst, Threads, _int8);
        if (_m.Config.FinalLogitSoftcap is double cap) SoftCap(dst[..(n * _vocab)], (float)cap);
    }

    // y = w·(x·rsqrt(mean(x²) + eps)) per row of h values (hidden, or head_dim for q/k norms), in fp32 as the torch model does.
    private void RmsNorm(ReadOnlySpan<float> x, Span<float> y, int t, float[] w, float eps, int rowLength = 0)
    {
        int h = rowLength > 0 ? rowLength : _hidden;
        for (int i = 0; i < t; i++)
        {
            var xr = x.Slice(i * h, h);
            var yr = y.Slice(i * h, h);
            float mean = TensorPrimitives.SumOfSquares(xr) / h;
            float r = 1f / MathF.Sqrt(mean + eps);
            TensorPrimitives.Multiply(xr, r, yr);
            TensorPrimitives.Multiply(yr, w, yr);
        }
    }

    // rotate_half on each head of v [heads·D] at position pos: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin), halves of D.
    private void Rope(Span<float> v, int heads, int pos, float[] cosTable, float[] sinTable)
    {
        int half = _d / 2;
        var cos = cosTable.AsSpan(pos * half, half);
        var sin = sinTable.AsSpan(pos * half, half);
        for (int hd = 0; hd < heads; hd++)
        {
            var x = v.Slice(hd * _d, _d);
            for (int i = 0; i < half; i++)
            {
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * cos[i] - x2 * sin[i];
                x[i + half] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }

    // _att [t, heads·D]: row i (position p = _rowPos[i] of session S = _rowSession[i]), head hd attends to S's cached
    // positions first..p of kv head hd/groups, first = 0, or p−W+1 on a layer with sliding window W.
    // Work items (row, head) split over the kernels' worker pool when the call is large enough (KernelThreads).
    private void Attention(int layer, int t)
    {
        int groups = _heads / _kvHeads, work = t * _heads, stride = 0;
        for (int i = 0; i < t; i++) stride = Math.Max(stride, _rowPos[i] + 1);
        if (_scores.Length < work * stride) _scores = new float[work * stride];
        float scale = (float)_m.Config.AttentionScale;
        float? cap = _m.Config.AttnLogitSoftcap is double c ? (float)c : null;
        int? window = _m.Layers[layer].Window;
        void One(int item)
        {
            int i = item / _heads, hd = item % _heads, kh = hd / groups, end = _rowPos[i] + 1;
            var owner = _rowSession[i];
            int first = window is int w ? Math.Max(0, end - w) : 0, n = end - first;
            var q = _q.AsSpan((i * _heads + hd) * _d, _d);
            var outv = _att.AsSpan((i * _heads + hd) * _d, _d);
            int baseAt = (kh * owner.ContextLength + first) * _d;
            var sc = _scores.AsSpan(item * stride, n);
            AttentionMath.Scores(q, owner._k[layer].AsSpan(baseAt, n * _d), n, sc);
            TensorPrimitives.Multiply(sc, scale, sc);
            if (cap is float cp) SoftCap(sc, cp);
            float max = TensorPrimitives.Max(sc);
            TensorPrimitives.Subtract(sc, max, sc);
            TensorPrimitives.Exp(sc, sc);
            TensorPrimitives.Multiply(sc, 1f / TensorPrimitives.Sum(sc), sc);
            AttentionMath.WeightedSum(sc, owner._v[layer].AsSpan(baseAt, n * _d), outv);
        }
        KernelThreads.For(work, Threads, 2L * stride * _d, (w0, w1) => { for (int w = w0; w < w1; w++) One(w); });
    }
}
