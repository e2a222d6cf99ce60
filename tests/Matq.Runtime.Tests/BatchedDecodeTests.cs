// Batched decode (PackedLlamaSession.DecodeBatch, BatchedDecoder): several sequences share one pass over the packed
// weights per step, each attending to its own cache at its own position. With int8 activations the GEMM's rows are the
// GEMV's exactly (Int8PrefillTests), so a batched step must give every sequence the logits it gets alone, bit for bit;
// with fp32 activations within float summation noise. The decoder (continuous batching) must give each request the
// tokens it gets from PackedTextGenerator alone, whatever joins or leaves around it.
using Matq.Runtime.Generation;
using Matq.Runtime.Packed;
using Matq.Runtime.Serving;

namespace Matq.Runtime.Tests;

public sealed class BatchedDecodeTests
{
    private static PackedLlamaModel Model(int bits) =>
        PackedLlamaModel.Load(Int8PrefillTests.Artifact.Value, new PackedModelOptions { Bits = bits, HeadBits = 8 });

    private static int[] Ids(int count, int seed, int vocab)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(vocab)).ToArray();
    }

    [Theory]
    [InlineData(PackedActivations.Int8, 4)]
    [InlineData(PackedActivations.Int8, 2)]
    [InlineData(PackedActivations.Fp32, 8)]
    public void A_batched_step_gives_each_sequence_its_own_logits(PackedActivations activations, int bits)
    {
        var model = Model(bits);
        int[] lengths = [5, 12, 33, 1, 9];                               // different positions, one prompt past MaxBatch
        foreach (int b in new[] { 3, 5 })                                // 3 rows: the GEMV per row; 5: the GEMM (token block 4)
            Check(model, lengths[..b], activations);
    }

    private static void Check(PackedLlamaModel model, int[] lengths, PackedActivations activations)
    {
        int v = model.Config.VocabSize, b = lengths.Length;
        var prompts = lengths.Select((n, i) => Ids(n, 10 + i, v)).ToArray();
        var batched = prompts.Select(p => { var s = new PackedLlamaSession(model, threads: 1, activations: activations); s.Forward(p); return s; }).ToArray();
        var alone = prompts.Select(p => { var s = new PackedLlamaSession(model, threads: 1, activations: activations); s.Forward(p); return s; }).ToArray();
        var logits = new float[b * v];
        for (int step = 0; step < 4; step++)
        {
            var next = Ids(b, 100 + step, v);
            PackedLlamaSession.DecodeBatch(batched, next, logits);
            for (int i = 0; i < b; i++)
            {
                var expected = alone[i].Forward([next[i]]);
                var got = logits.AsSpan(i * v, v);
                Assert.Equal(alone[i].Length, batched[i].Length);
                if (activations == PackedActivations.Int8)
                {
                    for (int k = 0; k < v; k++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[k]) == BitConverter.SingleToInt32Bits(got[k]),
                            $"batch of {b}, step {step}, sequence {i}, logit {k}: batched {got[k]:R} vs alone {expected[k]:R}");
                }
                else
                {
                    double max = expected.Max(Math.Abs), worst = 0;
                    for (int k = 0; k < v; k++) worst = Math.Max(worst, Math.Abs(expected[k] - got[k]));
                    Assert.True(worst <= 1e-4 * max, $"batch of {b}, step {step}, sequence {i}: max |Δ| {worst:G4} vs max |logit| {max:G4}");
                }
            }
        }
        // the rows really differ (each attended to its own cache), so the comparison above is not of one row three times
        Assert.NotEqual(logits.AsSpan(0, v).ToArray(), logits.AsSpan(v, v).ToArray());
    }

    [Fact]
    public void A_batch_is_refused_in_one_line_when_it_cannot_run()
    {
        var model = Model(4);
        var a = new PackedLlamaSession(model, threads: 1);
        var other = new PackedLlamaSession(Model(2), threads: 1);
        a.Forward([1, 2]);
        other.Forward([1]);
        int v = model.Config.VocabSize;
        Assert.Contains("appears twice", Assert.Throws<ArgumentException>(() => PackedLlamaSession.DecodeBatch([a, a], [1, 2], new float[2 * v])).Message);
        Assert.Contains("share one model", Assert.Throws<ArgumentException>(() => PackedLlamaSession.DecodeBatch([a, other], [1, 2], new float[2 * v])).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<MatqException>(() => PackedLlamaSession.DecodeBatch([a], [v], new float[v])).Message);
        Assert.Equal(2, a.Length);                                     // nothing ran
        var full = new PackedLlamaSession(model, contextLength: 3, threads: 1);
        full.Forward([1, 2, 3]);
        Assert.Contains("exceeds the context", Assert.Throws<MatqException>(() => PackedLlamaSession.DecodeBatch([full], [1], new float[v])).Message);
    }

    [Fact]
    public async Task The_decoder_gives_each_request_the_tokens_it_gets_alone()
    {
        var cache = new PackedPrecisionCache(Int8PrefillTests.Artifact.Value, new PackedServingOptions { Threads = 1, HeadBits = 8 });
        var precision = cache.Default;
        int v = precision.Model.Config.VocabSize;
        var requests = new (int[] Prompt, GenerationOptions Options)[]
        {
            (Ids(7, 1, v), new GenerationOptions { MaxNewTokens = 9, ContextLength = 64, Sampling = new SamplingOptions { Temperature = 0 } }),
            (Ids(20, 2, v), new GenerationOptions { MaxNewTokens = 5, ContextLength = 64, Sampling = new SamplingOptions { Temperature = 0.8, Seed = 3 } }),
            (Ids(3, 3, v), new GenerationOptions { MaxNewTokens = 30, ContextLength = 16, Sampling = new SamplingOptions { Temperature = 0 } }),  // slides its window
            (Ids(4, 4, v), new GenerationOptions { MaxNewTokens = 0, ContextLength = 64 }),
        };
        var expected = requests.Select(r =>
        {
            using var lease = precision.Rent();
            return PackedTextGenerator.Generate(lease.Session, r.Prompt, r.Options).Ids.ToArray();
        }).ToArray();

        var decoder = new BatchedDecoder(precision, maxBatch: 3);       // 4 requests, 3 slots: one waits for a slot
        var got = requests.Select(_ => new List<int>()).ToArray();
        var tasks = requests.Select((r, i) => decoder.Submit(r.Prompt, r.Options, id => { got[i].Add(id); return true; })).ToArray();
        var stats = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(expected[i], got[i].ToArray());
            Assert.Equal(Math.Max(0, expected[i].Length - 1), stats[i].DecodedTokens);
        }
        Assert.True(decoder.Rows > decoder.Steps, $"{decoder.Rows} rows in {decoder.Steps} steps: no step decoded two sequences");

        // a callback that stops its sequence ends that sequence alone; a failing one fails that request alone
        var stopped = new List<int>();
        var stop = decoder.Submit(requests[0].Prompt, requests[0].Options, id => { stopped.Add(id); return stopped.Count < 2; });
        var fail = decoder.Submit(requests[1].Prompt, requests[1].Options, _ => throw new InvalidOperationException("callback failed"));
        var whole = decoder.Submit(requests[0].Prompt, requests[0].Options, _ => true);
        await stop.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(expected[0].Take(2), stopped);
        Assert.Equal("callback failed", (await Assert.ThrowsAsync<InvalidOperationException>(() => fail)).Message);
        Assert.Equal(expected[0].Length - 1, (await whole.WaitAsync(TimeSpan.FromMinutes(1))).DecodedTokens);
    }
}
