// Lets Matq (the TorchSharp side, e.g. exporters reading the packed model's rope tables) and the tests reach internal
// pieces (BpeWordModel's split switch, the tokenizer pipeline steps, AttentionMath) directly.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Matq")]
[assembly: InternalsVisibleTo("Matq.Tests")]
[assembly: InternalsVisibleTo("Matq.Runtime.Tests")]
