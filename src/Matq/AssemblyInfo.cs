// Lets the tests reach Matq's internal pieces directly.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Matq.Tests")]
