// TokenTextStream: pieces concatenate to the whole text; a UTF-8 character split across byte tokens is held back until
// complete; stop sequences end the text before their first occurrence (also when one spans tokens), a tail that only
// starts one is held and released by Finish; TokenSampler's top-p keeps the shortest most-likely run reaching p.
using System.Text;
using Matq.Runtime.Generation;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Runtime.Generation;

public sealed class TokenTextStreamTests
{
    private static readonly TextTokenizer Bytes = TextTokenizer.CreateBytes();

    private static int[] Ids(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

    private static (List<string> Pieces, TokenTextStream Stream) Feed(string text, params string[] stops)
    {
        var stream = new TokenTextStream(Bytes, stops);
        var pieces = new List<string>();
        foreach (var id in Ids(text))
        {
            pieces.Add(stream.Add(id));
            if (stream.Stopped) break;
        }
        pieces.Add(stream.Finish());
        return (pieces, stream);
    }

    [Fact]
    public void Pieces_concatenate_to_the_text_and_a_split_character_is_held_until_complete()
    {
        var stream = new TokenTextStream(Bytes);
        var euro = Ids("€");   // 3 bytes
        Assert.Equal("a", stream.Add('a'));
        Assert.Equal("", stream.Add(euro[0]));
        Assert.Equal("", stream.Add(euro[1]));
        Assert.Equal("€", stream.Add(euro[2]));
        Assert.Equal("", stream.Add(euro[0]));
        Assert.Equal("\uFFFD", stream.Finish());   // a cut character at the very end is released as decoded
        Assert.Equal("a€\uFFFD", stream.Text);
        Assert.Equal(5, stream.TokenCount);

        var (pieces, s) = Feed("héllo wörld");
        Assert.Equal("héllo wörld", string.Concat(pieces));
        Assert.Equal("héllo wörld", s.Text);
        Assert.False(s.Stopped);
    }

    [Fact]
    public void A_stop_sequence_ends_the_text_before_it_and_is_never_released()
    {
        var (pieces, s) = Feed("one, two; three", "; ", "xyz");
        Assert.True(s.Stopped);
        Assert.Equal("one, two", s.Text);
        Assert.Equal("one, two", string.Concat(pieces));
        Assert.Equal("one, two; ".Length, s.TokenCount);   // the id completing the stop is counted
        Assert.Equal("", s.Finish());
        Assert.Equal("", s.Add('z'));

        // the earliest of several stops wins
        (_, s) = Feed("abcdef", "de", "bc");
        Assert.Equal("a", s.Text);
    }

    [Fact]
    public void A_tail_that_could_begin_a_stop_is_held_back_and_released_when_it_does_not()
    {
        var stream = new TokenTextStream(Bytes, ["END"]);
        Assert.Equal("x", stream.Add('x'));
        Assert.Equal("", stream.Add('E'));
        Assert.Equal("", stream.Add('N'));
        Assert.Equal("ENx", stream.Add('x'));   // "ENx" can no longer become "END"
        Assert.Equal("", stream.Add('E'));
        Assert.Equal("E", stream.Finish());       // generation ended without completing the stop
        Assert.Equal("xENxE", stream.Text);
        Assert.False(stream.Stopped);
    }

    [Fact]
    public void Top_p_keeps_the_shortest_most_likely_run_that_reaches_p()
    {
        // probabilities ∝ e^logit: 0.5, 0.3, 0.2 (logits ln 5, ln 3, ln 2), in shuffled id order
        float[] logits = [MathF.Log(3), MathF.Log(5), MathF.Log(2)];
        var seen = new HashSet<int>();
        var sampler = new TokenSampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.75, Seed = 3 });
        for (int i = 0; i < 400; i++) seen.Add(sampler.Next(logits));
        Assert.Equal([0, 1], seen.Order());   // 0.5 < 0.75 ≤ 0.5 + 0.3: ids 1 and 0, never 2

        var nucleus = new TokenSampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.4, Seed = 3 });
        for (int i = 0; i < 50; i++) Assert.Equal(1, nucleus.Next(logits));

        // p = 1 draws exactly as plain top-k sampling
        var plain = new TokenSampler(new SamplingOptions { Temperature = 0.9, TopK = 3, Seed = 9 });
        var full = new TokenSampler(new SamplingOptions { Temperature = 0.9, TopK = 3, TopP = 1, Seed = 9 });
        for (int i = 0; i < 100; i++) Assert.Equal(plain.Next(logits), full.Next(logits));
        var both = new HashSet<int>();
        for (int i = 0; i < 400; i++) both.Add(plain.Next(logits));
        Assert.Equal(3, both.Count);

        Assert.Throws<MatqException>(() => new TokenSampler(new SamplingOptions { TopP = 0 }));
        Assert.Throws<MatqException>(() => new TokenSampler(new SamplingOptions { TopP = 1.5 }));
    }
}
