// Lets the tokenizer tests reach internal pieces (BpeWordModel's split switch, the pipeline steps) directly.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Matq.Tests")]
