// Builds small .matq artifacts for tests: a min-max RTN quantizer (the ARCHITECTURE.md formula) over seeded or
// fixture weights, and a rewrite helper that edits a valid artifact's tensors or metadata to corrupt it.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Artifact;

internal static class ArtifactTestData
{
    /// <summary>
    /// Asymmetric min-max per group of g stored columns (-1 = whole row): a = (max - min)/(2^c - 1),
    /// z = round(-min/a), q = clamp(round(w/a) + z, 0, 2^c - 1). Weights are [out, in] row-major.
    /// </summary>
    public static MatqQuantizedTensor Rtn(string name, float[] w, int outF, int inF, int groupSize, int bits, int[]? perm = null)
    {
        int g = groupSize == -1 ? inF : groupSize, groups = (inF + g - 1) / g, qmax = (1 << bits) - 1;
        var codes = new byte[outF * inF];
        var scales = new float[outF * groups];
        var zeros = new float[outF * groups];
        for (int o = 0; o < outF; o++)
        {
            for (int gi = 0; gi < groups; gi++)
            {
                int k0 = gi * g, k1 = Math.Min(inF, k0 + g);
                float min = 0, max = 0;
                for (int k = k0; k < k1; k++)
                {
                    float v = w[o * inF + (perm is null ? k : perm[k])];
                    min = Math.Min(min, v); max = Math.Max(max, v);
                }
                float a = max > min ? (max - min) / qmax : 1e-6f;
                float z = MathF.Round(-min / a);
                scales[o * groups + gi] = a;
                zeros[o * groups + gi] = z;
                for (int k = k0; k < k1; k++)
                {
                    float v = w[o * inF + (perm is null ? k : perm[k])];
                    codes[o * inF + k] = (byte)Math.Clamp(MathF.Round(v / a) + z, 0, qmax);
                }
            }
        }
        return new MatqQuantizedTensor(name, outF, inF, groupSize, codes, scales, zeros, perm);
    }

    public static int[] SeededPerm(int n, int seed)
    {
        var p = Enumerable.Range(0, n).ToArray();
        new Random(seed).Shuffle(p);
        return p;
    }

    /// <summary>A small artifact: two quantized weights (one grouped with perm and a side tensor, one per-channel) and two floats.</summary>
    public static MatqArtifactWriter SmallWriter(int bits = 4)
    {
        var w = new MatqArtifactWriter("rtn", bits, 4, symmetric: false, trainedBits: bits >= 2 ? [bits, 2] : [1]);
        w.AlgorithmConfig = MatqMetadata.ParseObject("""{"clip": 1.0}""", "algorithm_config");
        w.ModelConfig = MatqMetadata.ParseObject("""{"model_type": "llama", "hidden_size": 6}""", "model_config");
        w.Tokenizer = new MatqTokenizerRef("hf-tokenizer-json", ["tokenizer.json"]);
        w.CreatedBy = "matq tests";
        var overflow = new MatqSideTensor("overflow", SafetensorsDtype.I32, [2, 2], BitConverter.GetBytes(3).Concat(BitConverter.GetBytes(1))
            .Concat(BitConverter.GetBytes(17)).Concat(BitConverter.GetBytes(1)).ToArray());
        var q0 = Rtn("layers.0.proj.weight", Bytes.Seeded(5 * 6, 1), 5, 6, 4, bits, SeededPerm(6, 2));
        w.AddQuantized(new MatqQuantizedTensor(q0.Name, 5, 6, 4, q0.Codes, q0.Scales, q0.Zeros, q0.Perm, [overflow]));
        w.AddFloat("norm.weight", [6], [1, 1, 1, 0.5f, 2, 1]);
        var q1 = Rtn("layers.1.proj.weight", Bytes.Seeded(3 * 6, 3), 3, 6, -1, bits);
        w.AddQuantized(q1);
        w.AddFloat("embed.weight", [4, 6], Bytes.Seeded(24, 4), SafetensorsDtype.BF16);
        return w;
    }

    public sealed class Parts
    {
        public List<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)> Tensors { get; } = new();
        public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);
        public int Index(string name) => Tensors.FindIndex(t => t.Name == name);
        public void Replace(string name, SafetensorsDtype dtype, long[] shape, byte[] data) => Tensors[Index(name)] = (name, dtype, shape, data);
        public System.Text.Json.Nodes.JsonObject Matq() => System.Text.Json.Nodes.JsonNode.Parse(Metadata["matq"])!.AsObject();
        public void SetMatq(System.Text.Json.Nodes.JsonObject o) => Metadata["matq"] = o.ToJsonString();
    }

    /// <summary>Reads a valid artifact as plain safetensors, lets <paramref name="edit"/> change it, writes it to <paramref name="dst"/>.</summary>
    public static void Rewrite(string src, string dst, Action<Parts> edit)
    {
        var parts = new Parts();
        using (var f = SafetensorsFile.Open(src))
        {
            foreach (var (k, v) in f.Metadata) parts.Metadata[k] = v;
            foreach (var t in f.Tensors) parts.Tensors.Add((t.Name, t.Dtype, t.Shape, f.ReadBytes(t.Name)));
        }
        edit(parts);
        var w = new SafetensorsWriter();
        foreach (var (k, v) in parts.Metadata) w.Metadata[k] = v;
        foreach (var t in parts.Tensors) w.Add(t.Name, t.Dtype, t.Shape, t.Data);
        w.Write(dst);
    }
}
