// SafeText: control characters, separators, bidi overrides and lone surrogates become visible escapes; long text is cut.
namespace Matq.Kernels.Tests;

public sealed class SafeTextTests
{
    [Theory]
    [InlineData("model.layers.0.weight", "'model.layers.0.weight'")]
    [InlineData("a\u001b[31mb", @"'a\x1B[31mb'")]
    [InlineData("a\nb\r\tc\0", @"'a\nb\r\tc\x00'")]
    [InlineData("back\\slash", @"'back\\slash'")]
    [InlineData("x\u0085y\u2028z\u202Ew", @"'x\x85y\u2028z\u202Ew'")]
    [InlineData("ok 😀 é", "'ok 😀 é'")]
    [InlineData(null, "'null'")]
    public void Quote_escapes_what_a_terminal_would_act_on(string? input, string expected) =>
        Assert.Equal(expected, SafeText.Quote(input));

    [Fact]
    public void A_lone_surrogate_is_escaped() => Assert.Equal(@"'lone \uD800 surrogate'", SafeText.Quote("lone " + (char)0xD800 + " surrogate"));

    [Fact]
    public void Long_text_is_cut_with_an_ellipsis()
    {
        var q = SafeText.Quote(new string('a', 1000));
        Assert.Equal("'" + new string('a', SafeText.MaxChars) + "…'", q);
        var esc = SafeText.Escape(new string('\u001b', 1000), 10);
        Assert.Equal(@"\x1B\x1B\x1B…", esc);
        Assert.DoesNotContain(SafeText.Escape(new string('\n', 5000)), char.IsControl);
    }
}
