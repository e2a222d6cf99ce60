// Sliding-window perplexity: closed forms for uniform logits, every token scored exactly once, and window-independence
// for a model whose prediction depends only on the previous token.
using Matq.Evaluation;
using Matq.Tests.Training;
using static TorchSharp.torch;

namespace Matq.Tests.Evaluation;

public class PerplexityTests
{
    [Theory]
    [InlineData(1000, 64, 32, 3)]
    [InlineData(257, 256, 128, 8)]
    [InlineData(50, 256, 128, 2)]   // shorter than one context
    public void UniformLogitsGiveVocabSizeAndClosedFormBitsPerByte(int n, int context, int stride, int batch)
    {
        const int V = 50;
        var tokens = TestText.Tokens(n, V, 3);
        const long bytes = 1234;
        var r = Perplexity.Evaluate(new UniformLm(V), tokens, bytes, new PerplexityOptions { Context = context, Stride = stride, Batch = batch }, CPU);
        Assert.Equal(n - 1, r.Tokens);
        // log-softmax of zeros is −ln V rounded to fp32 once; the fp64 sum adds no further error
        Assert.Equal(V, r.Perplexity, V * 1e-6);
        Assert.Equal((n - 1) * Math.Log(V), r.TotalNll, (n - 1) * Math.Log(V) * 1e-6);
        double closedForm = (n - 1) * Math.Log(V) / (Math.Log(2) * bytes);
        Assert.Equal(closedForm, r.BitsPerByte, closedForm * 1e-6);
    }

    [Theory]
    [InlineData(1000, 64, 32)]
    [InlineData(1000, 64, 64)]
    [InlineData(1000, 64, 1)]
    [InlineData(1001, 100, 37)]
    [InlineData(100, 100, 50)]
    [InlineData(101, 100, 50)]
    [InlineData(7, 100, 50)]
    public void EveryTokenIsScoredExactlyOnce(int n, int context, int stride)
    {
        var windows = Perplexity.Windows(n, context, stride);
        var times = new int[n];
        for (int k = 0; k < windows.Count; k++)
        {
            var w = windows[k];
            Assert.Equal(Math.Min(n - 1, context), w.Length);
            Assert.True(w.Begin >= 0 && w.Begin + w.Length < n);       // the input and every predicted position exist
            int end = w.Begin + w.Length + 1;                           // one past the last predicted position
            Assert.True(w.ScoreFrom > w.Begin);
            for (int pos = w.ScoreFrom; pos < end; pos++) times[pos]++;
            // all but the first and the (end-aligned) last window score exactly their last `stride` tokens
            if (k > 0 && k < windows.Count - 1) Assert.Equal(stride, end - w.ScoreFrom);
            if (k > 0) Assert.True(w.ScoreFrom - w.Begin >= w.Length - stride + 1, "scored tokens need at least L − stride + 1 tokens of context");
        }
        Assert.Equal(0, times[0]);                                 // the first token has no context
        for (int i = 1; i < n; i++) Assert.Equal(1, times[i]);
    }

    [Fact]
    public void ContextFreeModelGivesTheSameTotalForAnyWindowing()
    {
        // A bigram model's NLL of token i depends only on token i−1, so any correct windowing gives the direct sum.
        const int V = 32;
        using var model = new BigramLm(V, 8, seed: 5);
        var tokens = TestText.Tokens(500, V, 4);
        double direct;
        using (no_grad())
        {
            var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length], ScalarType.Int64);
            var logp = nn.functional.log_softmax(model.call(ids)[0], 1);                        // [N, V]
            direct = 0;
            for (int i = 1; i < tokens.Length; i++) direct -= logp[i - 1, tokens[i]].item<float>();
        }
        foreach (var (c, s, b) in new[] { (64, 32, 4), (64, 64, 1), (100, 7, 16), (600, 300, 2) })
        {
            var r = Perplexity.Evaluate(model, tokens, 500, new PerplexityOptions { Context = c, Stride = s, Batch = b }, CPU);
            Assert.Equal(499, r.Tokens);
            Assert.Equal(direct, r.TotalNll, direct * 1e-5);
        }
    }

    [Fact]
    public void ProgressReportsEveryBatchAndInvalidOptionsThrow()
    {
        var seen = new List<(int, int)>();
        Perplexity.Evaluate(new UniformLm(10), TestText.Tokens(300, 10, 1), 300, new PerplexityOptions { Context = 32, Stride = 16, Batch = 4 }, CPU,
            (done, total) => seen.Add((done, total)));
        int windows = Perplexity.Windows(300, 32, 16).Count;
        Assert.Equal((windows + 3) / 4, seen.Count);
        Assert.Equal((windows, windows), seen[^1]);
        Assert.Throws<MatqException>(() => new PerplexityOptions { Context = 32, Stride = 33 }.Validate());
        Assert.Throws<MatqException>(() => new PerplexityOptions { Batch = 0 }.Validate());
    }
}
