// Found by the fuzz tier (matq seeds 113, 193): tokenizer file names with control characters passed validation, then a NUL
// made Path.GetFullPath throw ArgumentException and an ESC reached the message. They are refused where the metadata is read.
using Matq.Formats.Artifact;

namespace Matq.Formats.Tests.Fuzz;

public sealed class TokenizerRefTests
{
    [Theory]
    [InlineData("a\0b")]
    [InlineData("\u001b[2J")]
    [InlineData("tok\n.json")]
    public void A_tokenizer_file_name_with_control_characters_is_refused(string file)
    {
        var e = MatqAssert.Throws(() => new MatqTokenizerRef("bytes", [file]), "tokenizer.files", "relative path");
        Assert.DoesNotContain(e.Message, char.IsControl);
    }
}
