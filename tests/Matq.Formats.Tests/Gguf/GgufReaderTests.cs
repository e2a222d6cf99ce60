// GGUF header validation: alignment (0, not a power of two, wrong type), dimensions that are 0 or overflow the element
// count or byte length, offsets that overflow data + offset + length, duplicates, counts past the end; each is one
// MatqException line naming the file, with names from the file escaped (SafeText).
using System.Buffers.Binary;
using System.Text;
using Matq.Formats.Gguf;

namespace Matq.Formats.Tests.Gguf;

public sealed class GgufReaderTests
{
    internal const string Tensor = "blk.0.attn_q.weight";

    /// <summary>A small valid GGUF: metadata of several types, a Q8_0 [2 rows × 64] tensor and an F32 norm.</summary>
    internal static GgufWriter SmallWriter(uint? alignment = null, string tensorName = Tensor)
    {
        var w = new GgufWriter().Add("general.architecture", "llama").Add("llama.block_count", 1u)
            .Add("tokenizer.ggml.tokens", ["a", "b", "c"]).Add("tokenizer.ggml.token_type", [1, 1, 3]).Add("llama.rope.freq_base", 10000f);
        if (alignment is uint a) w.Add("general.alignment", a);
        var q = Bytes.Seeded(128, 1);
        w.AddTensor(tensorName, [64, 2], GgmlType.Q8_0, GgufBlocks.Encode(GgmlType.Q8_0, q));
        w.AddTensor("output_norm.weight", [64], GgmlType.F32, GgufBlocks.Encode(GgmlType.F32, Bytes.Seeded(64, 2)));
        return w;
    }

    /// <summary>Byte position of the tensor info of <paramref name="name"/>: its n_dims field (after the name).</summary>
    internal static int InfoOf(byte[] file, string name)
    {
        var needle = Encoding.UTF8.GetBytes(name);
        int i = file.AsSpan().IndexOf(needle);
        Assert.True(i >= 8, $"tensor name {name} not found");
        return i + needle.Length;
    }

    private static string Write(TempDir tmp, byte[] bytes)
    {
        var path = tmp.File("m.gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void A_valid_file_opens_and_reads_its_tensors()
    {
        using var tmp = new TempDir();
        var f = GgufFile.Open(Write(tmp, SmallWriter(alignment: 32).ToBytes()));
        Assert.Equal(32, f.Alignment);
        Assert.Equal(2, f.Tensors.Count);
        Assert.Equal(136, f.ReadTensorBytes(f.Tensors[0]).Length);
    }

    [Theory]
    [InlineData(0u)]            // was DivideByZeroException
    [InlineData(0xFFFFFFFFu)]  // was cast to -1 and passed
    [InlineData(48u)]
    [InlineData(1u << 21)]
    public void Alignment_that_is_not_a_power_of_two_up_to_1_MiB_is_refused(uint alignment)
    {
        using var tmp = new TempDir();
        var path = Write(tmp, SmallWriter(alignment).ToBytes());
        MatqAssert.Throws(() => GgufFile.Open(path), "m.gguf", "general.alignment", alignment.ToString(System.Globalization.CultureInfo.InvariantCulture), "power of two");
    }

    [Fact]
    public void Alignment_of_another_type_is_refused_not_ignored()
    {
        using var tmp = new TempDir();
        var w = new GgufWriter().Add("general.alignment", "32");
        w.AddTensor("t", [32], GgmlType.F32, new byte[128]);
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, w.ToBytes())), "m.gguf", "general.alignment", "u32");
    }

    [Theory]
    [InlineData(1L << 62, 4L, "64 bits")]        // count overflows (was wrapped to 0 bytes and accepted)
    [InlineData(1L << 62, 1L, "past the end")]   // count and bytes fit, the file does not
    [InlineData(0L, 2L, "ne[0] = 0")]
    [InlineData(-1L, 2L, "ne[0] = 18446744073709551615")]
    [InlineData(64L, 1L << 40, "past the end")]
    public void Dimensions_that_are_zero_or_overflow_are_refused(long ne0, long ne1, string fragment)
    {
        using var tmp = new TempDir();
        var bytes = SmallWriter().ToBytes();
        int at = InfoOf(bytes, Tensor) + 4;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), ne0);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at + 8), ne1);
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", Tensor, fragment);
    }

    [Fact]
    public void A_byte_length_that_overflows_is_refused()
    {
        using var tmp = new TempDir();
        var bytes = SmallWriter().ToBytes();
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(InfoOf(bytes, "output_norm.weight") + 4), 1L << 62); // F32: 2^64 bytes (wrapped to 0 before)
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", "output_norm.weight", "more bytes than fit in 64 bits");
    }

    [Fact]
    public void An_offset_near_2_to_63_does_not_wrap_past_the_end_check()
    {
        using var tmp = new TempDir();
        var bytes = SmallWriter().ToBytes();
        int at = InfoOf(bytes, Tensor) + 4 + 16 + 4;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), long.MaxValue - 31); // a multiple of 32; data + offset overflowed before
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", Tensor, "past the end");
    }

    [Fact]
    public void A_block_type_with_rows_not_a_multiple_of_32_names_the_file_and_tensor()
    {
        using var tmp = new TempDir();
        var bytes = SmallWriter().ToBytes();
        int at = InfoOf(bytes, Tensor) + 4;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), 16);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at + 8), 8);
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", Tensor, "multiple of 32");
    }

    [Fact]
    public void Names_from_the_file_are_escaped_and_bounded_in_messages()
    {
        using var tmp = new TempDir();
        var evil = "\u001b[31mred\nline\0" + new string('x', 500);
        var bytes = SmallWriter(tensorName: evil).ToBytes();
        int at = InfoOf(bytes, evil) + 4;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), 0);
        var e = MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", @"'\x1B[31mred\nline\x00xx", "…'");
        Assert.DoesNotContain(e.Message, char.IsControl);
        Assert.True(e.Message.Length < 400, e.Message);
    }

    [Fact]
    public void Duplicate_tensor_names_are_refused()
    {
        using var tmp = new TempDir();
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, DuplicateTensorName())), "m.gguf", "appears twice", Tensor);
    }

    private static byte[] DuplicateTensorName()
    {
        var w = new GgufWriter();
        w.AddTensor(Tensor, [32], GgmlType.F32, new byte[128]);
        w.AddTensor(Tensor.Replace('q', 'k'), [32], GgmlType.F32, new byte[128]);
        var bytes = w.ToBytes();
        var second = Encoding.UTF8.GetBytes(Tensor.Replace('q', 'k'));
        int i = bytes.AsSpan().IndexOf(second);
        Encoding.UTF8.GetBytes(Tensor).CopyTo(bytes, i);
        return bytes;
    }

    [Fact]
    public void Duplicate_metadata_keys_are_refused()
    {
        using var tmp = new TempDir();
        var w = new GgufWriter().Add("general.name", "a").Add("general.namf", "b");
        w.AddTensor("t", [32], GgmlType.F32, new byte[128]);
        var bytes = w.ToBytes();
        int i = bytes.AsSpan().IndexOf("general.namf"u8);
        bytes[i + 11] = (byte)'e';
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", "'general.name'", "appears twice");
    }

    [Theory]
    [InlineData("tokenizer.ggml.tokens", 0xFFFF_FFFF_FFFFUL, "array items")]
    [InlineData("general.architecture", 1UL << 40, "length")]
    public void Counts_past_the_end_of_the_file_are_refused_before_allocating(string key, ulong count, string fragment)
    {
        using var tmp = new TempDir();
        var bytes = SmallWriter().ToBytes();
        int i = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(key)) + key.Length + 4; // after the value type
        if (fragment == "array items") i += 4;                                          // after the element type
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i), count);
        MatqAssert.Throws(() => GgufFile.Open(Write(tmp, bytes)), "m.gguf", fragment);
    }
}
