// Base of the class fixtures that build artifacts once per test class: a temporary folder, deleted with the fixture
// (xunit disposes a fixture's IAsyncLifetime part first, so servers are stopped before their files go).

namespace Matq.Cli.Tests;

public abstract class TempFolderFixture(string prefix) : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    public void Dispose()
    {
        if (Directory.Exists(Dir)) Directory.Delete(Dir, recursive: true);
    }
}
